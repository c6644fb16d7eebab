// @vtlab/demo: public entry. Its implementation belongs to a later issue; see README.md.
export {};

export { ConsoleBackend, type ConsoleBackendOptions, type ConsoleBackendStats } from "./console.js";

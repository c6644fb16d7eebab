/**
 * Run by tour.test.ts in a child process (`tourProcess` in vtlab-process.ts): `runTour` with the
 * options given as JSON in argv[2], the result printed as JSON on stdout (as `vtlab demo --json`
 * prints it), so that the test's worker waits without blocking while the machines run.
 */
import { runTour, type TourOptions } from "../src/tour.js";

const options = JSON.parse(process.argv[2] ?? "{}") as TourOptions;
process.stdout.write(JSON.stringify(runTour(options)));

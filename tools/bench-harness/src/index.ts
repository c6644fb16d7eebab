import { Bench } from "tinybench";

/** One figure a benchmark reports: printed as a single JSON line. */
export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** Relative margin of error of the mean, in percent, where the figure comes from timing. */
  readonly rme?: number;
  readonly samples?: number;
}

/** A timed case: `run` is called repeatedly; each call does `opsPerCall` units of work. */
export interface RateCase {
  readonly name: string;
  readonly unit: string;
  readonly opsPerCall: number;
  readonly run: () => void;
  readonly setup?: () => void;
}

/** Print one figure as one JSON object on its own line. */
export function report(figure: Figure): void {
  process.stdout.write(`${JSON.stringify(figure)}\n`);
}

/**
 * Time each case with tinybench and print its throughput (units per second).
 * `timeMs` is per case; the environment variable VTLAB_BENCH_MS overrides it.
 */
export async function measureRates(cases: readonly RateCase[], timeMs = 1000): Promise<Figure[]> {
  const override = Number(process.env.VTLAB_BENCH_MS);
  const time = Number.isFinite(override) && override > 0 ? override : timeMs;
  const figures: Figure[] = [];
  for (const c of cases) {
    c.setup?.();
    const bench = new Bench({ time, warmupTime: Math.min(200, time / 4) });
    bench.add(c.name, c.run);
    await bench.run();
    const task = bench.tasks[0];
    const result = task?.result;
    if (result === undefined || result.error !== undefined) {
      throw new Error(`benchmark ${c.name} failed: ${String(result?.error ?? "no result")}`);
    }
    const figure: Figure = {
      name: c.name,
      value: Math.round(result.throughput.mean * c.opsPerCall),
      unit: c.unit,
      rme: Math.round(result.throughput.rme * 100) / 100,
      samples: result.throughput.samples.length,
    };
    report(figure);
    figures.push(figure);
  }
  return figures;
}

/**
 * A progress bar with ETA on stderr: redrawn in place on a terminal, one line per step
 * (at most one every few seconds) elsewhere, so logs of CI and notebooks stay readable.
 */
export class ProgressBar {
  private done = 0;
  private readonly started = Date.now();
  private lastLine = 0;
  private readonly interactive: boolean;

  constructor(
    private readonly total: number,
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.interactive = Boolean(stream.isTTY);
  }

  /** Counts `steps` finished items and redraws; `note` is shown after the bar (e.g. a loss). */
  tick(note = '', steps = 1): void {
    this.done = Math.min(this.total, this.done + steps);
    const now = Date.now();
    const finished = this.done >= this.total;
    if (!this.interactive && !finished && now - this.lastLine < 3000) return;
    this.lastLine = now;
    const line = this.render(note);
    if (this.interactive) this.stream.write(`\r${line}\x1b[K${finished ? '\n' : ''}`);
    else this.stream.write(`${line}\n`);
  }

  render(note = ''): string {
    const fraction = this.total > 0 ? this.done / this.total : 1;
    const width = 24;
    const filled = Math.round(fraction * width);
    const elapsed = (Date.now() - this.started) / 1000;
    const eta = this.done > 0 ? (elapsed / this.done) * (this.total - this.done) : NaN;
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    return `${this.label} [${bar}] ${this.done}/${this.total} ${Math.round(fraction * 100)}% ${formatDuration(elapsed)} elapsed, ETA ${Number.isFinite(eta) ? formatDuration(eta) : '?'}${note ? ` ${note}` : ''}`;
  }
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

/** A live status line for long CLI work, shown only on a terminal. */
import cliProgress from 'cli-progress';

export interface StatusLine {
  update(phase: string, done: number): void;
  stop(): void;
}

export function statusLine(title: string, enabled = process.stderr.isTTY === true): StatusLine {
  if (!enabled) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { format: `${title} {spinner} {phase}: {value}`, stream: process.stderr, hideCursor: true, clearOnComplete: true, fps: 10 },
    cliProgress.Presets.shades_classic,
  );
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let frame = 0;
  bar.start(0, 0, { phase: 'starting', spinner: frames[0] });
  return {
    update(phase, done) {
      bar.update(done, { phase, spinner: frames[frame++ % frames.length] });
    },
    stop() {
      bar.stop();
    },
  };
}


/**
 * A real browser for the console tests: Debian's chromium (never a
 * downloaded one) driven by puppeteer-core. Tests skip with a visible
 * message when it is missing, and fail instead under CI=true.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import type { Browser, Page } from 'puppeteer-core';

export const CHROMIUM = process.env.BERTH_TEST_CHROMIUM ?? '/usr/bin/chromium';

/** Where screenshots go: $BERTH_TEST_OUTPUT/console, by default test-output/console in the checkout. */
export const OUTPUT_DIR = join(process.env.BERTH_TEST_OUTPUT ?? fileURLToPath(new URL('../../../test-output/', import.meta.url)), 'console');

export function browserUnavailableReason(): string | null {
  return existsSync(CHROMIUM) ? null : `${CHROMIUM} does not exist`;
}

export function requireBrowser(t: Pick<TestContext, 'skip'>): boolean {
  const why = browserUnavailableReason();
  if (why === null) return true;
  const message = `chromium not available: ${why}`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true, so this fails instead of skipping; run .ci/setup-clients.sh)`);
  t.skip(`${message} (apt-get install chromium, or run .ci/setup-clients.sh as root)`);
  return false;
}

export async function launchBrowser(): Promise<Browser | undefined> {
  if (browserUnavailableReason() !== null) return undefined;
  const { launch } = await import('puppeteer-core');
  return launch({
    executablePath: CHROMIUM,
    headless: true,
    // --no-sandbox: test machines run as root, where chromium's sandbox cannot start.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--disable-extensions'],
  });
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(OUTPUT_DIR, { recursive: true });
  const file = join(OUTPUT_DIR, `${name}.png`);
  await page.screenshot({ path: file as `${string}.png`, fullPage: true });
  return file;
}

/** Waits until the page's visible text contains `text`. */
export async function waitForText(page: Page, text: string, timeout = 10_000): Promise<void> {
  await page.waitForFunction((t: string) => document.body.innerText.includes(t), { timeout }, text);
}

export async function pageText(page: Page): Promise<string> {
  return page.evaluate(() => document.body.innerText);
}

/** The `ui` setting: on by default, off by the config file or BERTH_UI; anything but a boolean is refused. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import { authDir } from '../helpers/auth.js';

describe('ui setting', () => {
  it('is on by default and turned off by ui: false or BERTH_UI=false', () => {
    assert.equal(loadConfig({}, {}).ui, true);
    const dir = authDir();
    writeFileSync(join(dir, 'off.yaml'), 'ui: false\n');
    assert.equal(loadConfig({ config: join(dir, 'off.yaml') }, {}).ui, false);
    assert.equal(loadConfig({}, { BERTH_UI: 'false' }).ui, false);
    assert.equal(loadConfig({ config: join(dir, 'off.yaml') }, { BERTH_UI: 'true' }).ui, true, 'the environment overrides the file');
  });

  it('refuses a value that is not a boolean', () => {
    const dir = authDir();
    writeFileSync(join(dir, 'bad.yaml'), 'ui: sometimes\n');
    assert.throws(() => loadConfig({ config: join(dir, 'bad.yaml') }, {}), ConfigError);
    assert.throws(() => loadConfig({}, { BERTH_UI: 'maybe' }), ConfigError);
  });
});

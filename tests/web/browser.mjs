// One warm headless Chromium for a pytest module, driven over stdin/stdout (one JSON object a line).
//
//   node tests/web/browser.mjs CHROMIUM_PATH USER_DATA_DIR
//   -> {"op": "goto", "url": ...} | {"op": "eval", "expr": "async (arg) => ...", "arg": ...}
//      {"op": "screenshot", "path": ...} | {"op": "drop", "selector": ..., "files": [{name, type, b64}]}
//      {"op": "download", "selector": ..., "path": ...} | {"op": "log"} | {"op": "close"}
//   <- {"id": ..., "ok": true, "value": ...} or {"id": ..., "ok": false, "error": ...}
//
// Every request the page makes is recorded; any that is not for 127.0.0.1 is aborted here (a second line
// of defence behind the page's CSP) and reported by "log", as are console messages and CSP violations.
import {createInterface} from 'node:readline';
import {fileURLToPath} from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const {chromium} = await import(path.join(here, '..', '..', 'web_demo', 'node_modules', 'playwright-core', 'index.mjs'));

const [executablePath, userDataDir] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync',
         // A synthetic camera (a moving test pattern) and no permission prompt, for the webcam path.
         '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'],
  viewport: {width: 1100, height: 1000},
  acceptDownloads: true,
});
const page = context.pages()[0] || await context.newPage();

const log = {requests: [], outside: [], console: [], cspViolations: [], pageErrors: []};
const isLocal = (url) => {
  const u = new URL(url);
  return ['blob:', 'data:'].includes(u.protocol) || u.hostname === '127.0.0.1';
};
await context.route('**/*', (route) => {
  const url = route.request().url();
  if (isLocal(url)) return route.continue();
  log.outside.push(url);
  return route.abort('blockedbyclient');
});
context.on('request', (req) => {
  log.requests.push(req.url());
  if (!isLocal(req.url()) && !log.outside.includes(req.url())) log.outside.push(req.url());
});
page.on('console', (msg) => {
  const text = msg.text();
  log.console.push(`${msg.type()}: ${text}`.slice(0, 500));
  if (/Content Security Policy/i.test(text)) log.cspViolations.push(text.slice(0, 300));
});
page.on('pageerror', (err) => log.pageErrors.push(String(err).slice(0, 500)));

async function handle(cmd) {
  switch (cmd.op) {
    case 'goto':
      await page.goto(cmd.url, {waitUntil: 'load'});
      return page.url();
    case 'eval':
      // The expression is a function source; it runs in the page with `arg`.
      return page.evaluate(({expr, arg}) => (0, eval)(expr)(arg), {expr: cmd.expr, arg: cmd.arg ?? null});
    case 'screenshot':
      await page.screenshot({path: cmd.path, fullPage: true});
      return cmd.path;
    case 'drop': {
      // A real drop event with a DataTransfer holding the files, dispatched on the element.
      const dt = await page.evaluateHandle((files) => {
        const transfer = new DataTransfer();
        for (const f of files) {
          const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
          transfer.items.add(new File([bytes], f.name, {type: f.type || ''}));
        }
        return transfer;
      }, cmd.files);
      await page.dispatchEvent(cmd.selector, 'drop', {dataTransfer: dt});
      await dt.dispose();
      return true;
    }
    case 'download': {
      // Click a link the way a user does and keep the file the browser downloads.
      const [download] = await Promise.all([page.waitForEvent('download'), page.click(cmd.selector)]);
      await download.saveAs(cmd.path);
      return {path: cmd.path, suggested: download.suggestedFilename()};
    }
    case 'log':
      return log;
    case 'close':
      await context.close();
      return true;
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const rl = createInterface({input: process.stdin});
process.stdout.write(JSON.stringify({ready: true, version: context.browser()?.version() ?? null}) + '\n');
for await (const line of rl) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  let reply;
  try {
    reply = {id: cmd.id, ok: true, value: await handle(cmd)};
  } catch (err) {
    reply = {id: cmd.id, ok: false, error: String(err && err.stack || err).slice(0, 4000)};
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
  if (cmd.op === 'close') break;
}
process.exit(0);

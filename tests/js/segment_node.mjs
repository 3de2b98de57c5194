// Sends the messages of a JSON file with @segment/analytics-node, unchanged but for the host,
// and prints what the library reported: errors through its own callbacks, and the HTTP answers.
// Usage: node segment_node.mjs <host> <write key> <messages.json>
import { readFileSync } from 'node:fs';
import { Analytics } from '@segment/analytics-node';

const [host, writeKey, file] = process.argv.slice(2);
const messages = JSON.parse(readFileSync(file, 'utf8'));
const analytics = new Analytics({ writeKey, host, flushInterval: 200 });
const report = { callbackErrors: [], emittedErrors: [], statuses: [] };
analytics.on('error', (err) => report.emittedErrors.push(`${err.code}: ${err.reason?.message ?? err.reason}`));
analytics.on('http_response', (res) => report.statuses.push(res.status));
for (const { type, ...message } of messages) {
  analytics[type](message, (err) => {
    if (err) report.callbackErrors.push(String(err.message ?? err));
  });
}
await analytics.closeAndFlush({ timeout: 20000 });
console.log(JSON.stringify(report));

// Sends Universal Analytics hits with the npm `universal-analytics` library, unchanged except for
// the host: `node ua_send.js <collector url> <calls.json>`. Each call is [method, ...args] of a
// Visitor (pageview, event, timing, exception, ...); the hits are queued, then sent with the
// library's default batching. Prints {"error": <what the library's callback got>, "sent": n}.
"use strict";
const fs = require("fs");
const ua = require("universal-analytics");

const [url, callsFile, cid] = process.argv.slice(2);
const calls = JSON.parse(fs.readFileSync(callsFile, "utf8"));
const visitor = ua("UA-000000-1", cid, { hostname: url, http: true, strictCidFormat: false });
for (const [method, ...args] of calls) {
  visitor[method](...args);
}
visitor.send(function (error, sent) {
  process.stdout.write(JSON.stringify({ error: error === null ? null : String(error), sent }));
});

// SPDX-License-Identifier: MIT
// Debian's node-ws as the peer (the same roles as peer.py).
//   node peer.js server [--no-deflate]
//     echo server on 127.0.0.1, prints "PORT n"; "cmd:" messages as in
//     peer.py; /reject answers 403; on /report-pings each ping received is
//     reported with a "got-ping" text message.
//   node peer.js client --url URL --small-url URL [--no-deflate]
//     [--server-deflate]: checks our echo-server.
'use strict';
const WebSocket = require('ws');
const crypto = require('crypto');

const args = process.argv.slice(2);
const mode = args[0];
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const flag = (name) => args.includes(name);
const deflate = !flag('--no-deflate');
setTimeout(() => { console.log('FAIL timeout'); process.exit(1); }, 60000)
  .unref();

if (mode === 'server') {
  const wss = new WebSocket.WebSocketServer({
    host: '127.0.0.1', port: 0, perMessageDeflate: deflate,
    maxPayload: 64 << 20,
    verifyClient: (info, cb) => cb(info.req.url !== '/reject', 403),
  });
  wss.on('listening', () => console.log('PORT ' + wss.address().port));
  wss.on('connection', (ws, req) => {
    if (req.url === '/report-pings') ws.on('ping', () => ws.send('got-ping'));
    ws.on('message', (data, isBinary) => {
      const s = isBinary ? null : data.toString();
      if (s === 'cmd:frag') {
        ws.send('abc', { fin: false });
        ws.send('def', { fin: false });
        ws.send('ghi', { fin: true });
      } else if (s === 'cmd:binary') {
        ws.send(Buffer.from([0, 1, 2, 255]));
      } else if (s && s.startsWith('cmd:ping:')) {
        const p = s.slice(9);
        ws.once('pong', (d) => ws.send('pong:' + d.toString()));
        ws.ping(p);
      } else if (s && s.startsWith('cmd:close:')) {
        const [, , code, reason] = s.split(':');
        ws.close(Number(code), reason);
      } else {
        ws.send(data, { binary: isBinary });
      }
    });
  });
} else {
  let passed = 0, failed = 0;
  const check = (ok, what, why) => {
    if (ok) passed++; else failed++;
    console.log((ok ? 'ok ' : 'FAIL ') + what + (ok ? '' : ': ' + why));
  };
  const open = (url, pmd) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: pmd, maxPayload: 64 << 20 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
  const next = (ws) => new Promise((resolve) =>
    ws.once('message', (d, isBinary) => resolve({ d, isBinary })));
  const closed = (ws) => new Promise((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const text = (n) => 'ab\u03bb\u20ac'.repeat(n / 4 + 1).slice(0, n);

  (async () => {
    const ws = await open(opt('--url'), deflate);
    const want = flag('--server-deflate') && deflate;
    check(/permessage-deflate/.test(ws.extensions) === want,
      'permessage-deflate negotiated: ' + want, 'got ' + JSON.stringify(ws.extensions));
    for (const n of [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20, 4 << 20]) {
      const t = text(n);
      ws.send(t);
      let r = await next(ws);
      check(!r.isBinary && r.d.toString() === t, `text ${n} echoed`, `got ${r.d.length}`);
      const b = crypto.randomBytes(n);
      ws.send(b);
      r = await next(ws);
      check(r.isBinary && Buffer.compare(r.d, b) === 0, `binary ${n} echoed`, `got ${r.d.length}`);
    }
    ws.send('frag-', { fin: false });
    ws.send('', { fin: false });
    ws.send('ment\u00e9', { fin: true });
    let r = await next(ws);
    check(r.d.toString() === 'frag-ment\u00e9', 'fragmented text echoed whole', r.d.toString());
    const pong = new Promise((resolve) => ws.once('pong', (d) => resolve(d.toString())));
    ws.ping('ping-payload');
    check((await pong) === 'ping-payload', 'ping answered by a pong with the same payload', '');
    const c = closed(ws);
    ws.close(4321, 'done');
    let info = await c;
    // RFC 6455 5.5.1: the code is echoed; the reason need not be.
    check(info.code === 4321, 'our close 4321 echoed',
      `${info.code} ${info.reason}`);

    // Invalid UTF-8 sent as text (ws does not check what it sends): 1007.
    const bad = await open(opt('--url'), false);
    const c2 = closed(bad);
    bad.send(Buffer.from([0x6f, 0x6b, 0xed, 0xa0, 0x80]), { binary: false });
    info = await c2;
    check(info.code === 1007, 'invalid UTF-8: close 1007', String(info.code));

    // Over --max-message: 1009.
    const big = await open(opt('--small-url'), false);
    const c3 = closed(big);
    big.send(Buffer.alloc(1001));
    info = await c3;
    check(info.code === 1009, 'over max-message: close 1009', String(info.code));
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed || !passed ? 1 : 0);
  })().catch((e) => { console.log('FAIL ' + e); process.exit(1); });
}

// node_hello: the Node.js peer of examples/hello for benchmarks/run.py.
// A cluster primary forks N workers that answer "Hello World\n" on every
// path with http.createServer, the way a Node user would write it; the
// primary respawns a worker that dies (as cluster's master does).
//
//   node benchmarks/node_hello.js --host 127.0.0.1 --port 0 --workers 1
//
// With --mode bodies the workers answer POST /echo-size instead (the peer of
// benchmarks/bodies.cpp in the runner's bodies section): the request body is
// read whole (its chunks joined into one Buffer, as a handler that needs the
// body would) and its length is the answer, in decimal.
//
// Once every worker listens, the primary prints the same ready line as
// cluster's master:
//   node: master <PID> listening on http://<HOST>:<PORT> with <N> workers
// SIGTERM or SIGINT stops the primary and its workers.
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');

function parseArgs(argv) {
  const args = { host: '127.0.0.1', port: 8080, workers: 1, mode: 'hello' };
  for (let i = 2; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!(name in args) || i + 1 >= argv.length) {
      console.error(`usage: node ${argv[1]} [--host ADDR] [--port N] [--workers N] [--mode hello|bodies]`);
      process.exit(2);
    }
    args[name] = name === 'host' || name === 'mode' ? argv[i + 1] : Number(argv[i + 1]);
  }
  return args;
}

const args = parseArgs(process.argv);

if (cluster.isPrimary) {
  let listening = 0;
  let stopping = false;
  let announced = false;
  const fork = () => cluster.fork();
  cluster.on('listening', (worker, address) => {
    if (announced) return;
    if (++listening === args.workers) {
      announced = true;
      process.stdout.write(
        `node: master ${process.pid} listening on http://${args.host}:${address.port} with ${args.workers} workers\n`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) fork();
  });
  const stop = () => {
    stopping = true;
    for (const id in cluster.workers) cluster.workers[id].process.kill('SIGTERM');
    // Bounded: a worker that does not exit in time is killed.
    setTimeout(() => {
      for (const id in cluster.workers) cluster.workers[id].process.kill('SIGKILL');
      process.exit(0);
    }, 2000).unref();
    cluster.disconnect(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  for (let i = 0; i < args.workers; ++i) fork();
} else {
  const body = 'Hello World\n';
  const hello = (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': body.length });
    res.end(body);
  };
  const echoSize = (req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const answer = `${Buffer.concat(chunks).length}\n`;
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': answer.length });
      res.end(answer);
    });
  };
  const server = http.createServer(args.mode === 'bodies' ? echoSize : hello);
  // Keep-alive connections stay open for the whole measurement.
  server.keepAliveTimeout = 65000;
  server.listen(args.port, args.host);
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
  process.on('SIGINT', () => {});
}

#!/usr/bin/env node
// Starts one local AWS emulator for sqspool's integration tests.
//
//   node serve.js <sqs|dynamodb> <host> <port> <port-file>
//
// sqs      -> local-aws-sqs (SQS, AWS JSON 1.0 and Query protocols)
// dynamodb -> dynalite (DynamoDB, in memory)
//
// Port 0 lets the kernel pick a free port, so there is no race between
// choosing a port and binding it. Once the server listens, the bound port is
// written to <port-file> (atomically: temp file + rename), which is what
// scripts/emulators.sh waits for.
//
// If SQSPOOL_EMULATOR_PARENT_PID is set, the emulator exits by itself once
// that process is gone, so an emulator never outlives a killed test run, and
// it ignores SIGINT (it is stopped with SIGTERM). Without it, Ctrl-C stops it.
//
// Normally started by scripts/emulators.sh; see there.
"use strict";

const fs = require("fs");

const [kind, host, portArg, portFile] = process.argv.slice(2);
if (!kind || !host || portArg === undefined || !portFile) {
  console.error("usage: node serve.js <sqs|dynamodb> <host> <port> <port-file>");
  process.exit(2);
}
const port = Number(portArg);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`serve.js: bad port ${JSON.stringify(portArg)}`);
  process.exit(2);
}

function fail(err) {
  console.error(`serve.js ${kind}: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
}
process.on("uncaughtException", fail);
process.on("unhandledRejection", fail);

// A client that disconnects mid-request (a consumer killed by a crash test)
// makes the request stream emit "aborted"/"error"; unhandled, that would be an
// uncaught exception and take the whole emulator down with it.
function tolerateAbortedRequests(server) {
  server.on("request", (req) => req.on("error", () => {}));
}

function announce(server) {
  tolerateAbortedRequests(server);
  const bound = server.address().port;
  fs.writeFileSync(portFile + ".tmp", String(bound) + "\n");
  fs.renameSync(portFile + ".tmp", portFile);
  console.log(`${kind} emulator listening at http://${host}:${bound} (pid ${process.pid})`);
}

function watchParent() {
  const parent = Number(process.env.SQSPOOL_EMULATOR_PARENT_PID || 0);
  if (!parent) return;
  const gone = () => {
    console.log(`${kind} emulator: parent ${parent} is gone, exiting`);
    process.exit(0);
  };
  const timer = setInterval(() => {
    // Reparented: the parent died (it may linger as a zombie for a while).
    if (process.ppid !== parent) return gone();
    try {
      process.kill(parent, 0); // signal 0: existence check only
    } catch (e) {
      if (e.code !== "EPERM") gone(); // EPERM: exists, owned by someone else
    }
  }, 500);
  timer.unref();
}

function shutdownOn(server) {
  const stop = () => {
    server.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  if (process.env.SQSPOOL_EMULATOR_PARENT_PID) {
    // Managed by scripts/emulators.sh, which stops us with SIGTERM. Ctrl-C in
    // the terminal (say, to abort one `go test` in the emulator shell) reaches
    // our process group too and must not take the emulators down.
    process.on("SIGINT", () => {});
  } else {
    process.on("SIGINT", stop);
  }
}

async function main() {
  let server;
  switch (kind) {
    case "sqs": {
      const { createSqsServer } = require("local-aws-sqs");
      // hostname is both the listen address and the host in the QueueUrls
      // it hands out. Queue creation lifecycle (60 s before a deleted name can
      // be reused) stays on, as in AWS: awstest uses unique names anyway.
      server = await createSqsServer({ hostname: host, port });
      break;
    }
    case "dynamodb": {
      const dynalite = require("dynalite");
      // In memory. Tables still pass through CREATING/DELETING like in AWS,
      // only much shorter (AWS takes seconds), so waiters are exercised.
      server = dynalite({ createTableMs: 50, deleteTableMs: 50, updateTableMs: 50 });
      await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, resolve);
      });
      break;
    }
    default:
      console.error(`serve.js: unknown emulator ${JSON.stringify(kind)} (want sqs or dynamodb)`);
      process.exit(2);
  }
  server.on("error", fail);
  shutdownOn(server);
  watchParent();
  announce(server);
}

main().catch(fail);

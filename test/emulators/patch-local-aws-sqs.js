#!/usr/bin/env node
// Makes local-aws-sqs 2.0.2 behave as SQS does where sqspool's tests depend
// on it. Run by scripts/emulators.sh (emulators_install) after `npm ci`; it
// edits node_modules/local-aws-sqs/dist/index.js in place, and is a no-op on
// an already patched file. Each edit must match exactly once, or the script
// fails, so an upgraded package cannot be silently half-patched. See
// PATCHES.md for what each edit changes and why.
"use strict";

const fs = require("fs");
const path = require("path");

const pkgDir = path.join(__dirname, "node_modules", "local-aws-sqs");
const file = path.join(pkgDir, "dist", "index.js");
const marker = "/* sqspool-patched: receive-count, prompt-long-poll, abandoned-poll */\n";

const edits = [
  {
    name: "receive-count: ChangeMessageVisibility does not count as a receive",
    // Wt(message, timeoutSeconds, keepHandle) makes a message invisible; only
    // a receive (keepHandle unset) increments ApproximateReceiveCount.
    from: "let n=Number(t.record.attributes.ApproximateReceiveCount)+1;",
    to: "let n=Number(t.record.attributes.ApproximateReceiveCount)+(i?0:1);",
  },
  {
    name: "prompt-long-poll: a long poll returns as soon as it holds a message",
    // The poll loop ticks every 10 ms; it returned only with
    // MaxNumberOfMessages or at the end of the wait, holding what it took.
    from: "}},10),c.unref()",
    to: "}if(r.length>0){clearInterval(c),clearTimeout(n),o()}},10),c.unref()",
  },
  {
    name: "abandoned-poll: the poll loop stops once its client is gone (1/3)",
    from: "Fs=function(t,e,i){return p(this,null,function*(){let r=[],n,o,a=new Promise(y=>{o=y}),d=0,c;return n=setTimeout(()=>{clearInterval(c),o()},fr+t*1e3),n.unref(),c=setInterval(()=>{d++;for(",
    to: "Fs=function(t,e,i,A){return p(this,null,function*(){let r=[],n,o,a=new Promise(y=>{o=y}),d=0,c;return n=setTimeout(()=>{clearInterval(c),o()},fr+t*1e3),n.unref(),c=setInterval(()=>{d++;if(A&&A()){clearInterval(c),clearTimeout(n),o();return}for(",
  },
  {
    name: "abandoned-poll (2/3): Queue.receive passes the check on",
    from: "function*({VisibilityTimeout:t,WaitTimeSeconds:e,MaxNumberOfMessages:i}){let n=e!=null?e:this.ReceiveMessageWaitTimeSeconds,",
    to: "function*({VisibilityTimeout:t,WaitTimeSeconds:e,MaxNumberOfMessages:i,Aborted:A}){let n=e!=null?e:this.ReceiveMessageWaitTimeSeconds,",
  },
  {
    name: "abandoned-poll (2/3, cont.)",
    from: "return yield l(this,D,Fs).call(this,n,Number(o),Number(t))",
    to: "return yield l(this,D,Fs).call(this,n,Number(o),Number(t),A)",
  },
  {
    name: "abandoned-poll (3/3): the ReceiveMessage action tells whether its client is still there",
    from: "a=yield this.foundQueue.receive({VisibilityTimeout:e,WaitTimeSeconds:i,MaxNumberOfMessages:r});",
    to: "a=yield this.foundQueue.receive({VisibilityTimeout:e,WaitTimeSeconds:i,MaxNumberOfMessages:r,Aborted:()=>!!(this.res.destroyed||this.res.socket&&this.res.socket.destroyed)});",
  },
];

function main() {
  const version = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8")).version;
  if (version !== "2.0.2") {
    throw new Error(`local-aws-sqs ${version} installed; these patches are for 2.0.2 (see PATCHES.md)`);
  }
  let src = fs.readFileSync(file, "utf8");
  if (src.startsWith(marker)) {
    console.log("emulators: local-aws-sqs already patched");
    return;
  }
  for (const e of edits) {
    const n = src.split(e.from).length - 1;
    if (n !== 1) {
      throw new Error(`patch "${e.name}": expected the text once, found it ${n} times`);
    }
    src = src.replace(e.from, () => e.to);
  }
  fs.writeFileSync(file + ".tmp", marker + src);
  fs.renameSync(file + ".tmp", file);
  console.log(`emulators: local-aws-sqs patched (${edits.length} edits; see test/emulators/PATCHES.md)`);
}

try {
  main();
} catch (err) {
  console.error(`emulators: ${err.message}`);
  process.exit(1);
}

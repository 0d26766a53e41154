// Package faults is sqspool's fault suite: the pool end to end under injected
// SQS faults, handler failures and panics, malformed bodies, process crashes
// (SIGKILL), graceful stops (SIGTERM), slow handlers and FIFO groups. Every
// scenario runs against the in-memory sqsfake; those marked (E) also against
// the local emulators that ./scripts/test starts (they skip unless
// SQSPOOL_INTEGRATION=1):
//
//	flood_test.go      1. 10,000 messages (100,000 long) under every fault
//	crash_test.go      2. (E) crashes and restarts; nothing lost or applied twice
//	sigterm_test.go    3. (E) SIGTERM: finish, flush, give back, exit in time
//	heartbeat_test.go  4. (E) handlers three visibility timeouts long
//	fifo_test.go       5. (E) per-group order under concurrency and failures
//	crashsuite_test.go 6. (E) the idempotent sink under kills every 2-5 s, two
//	                      consumers at once, poison and failing messages, a
//	                      redrive policy of 5 receives: one result per healthy
//	                      message, none in the DLQ, nothing written twice;
//	                      with 3 receives, a healthy message in the DLQ only
//	                      when its own failures and kills spent its receives
//	                      (receipts_test.go: per-child proxies record every
//	                      receive; SQSPOOL_CRASH_DEFECT=inprogress-now runs
//	                      a consumer that must make that check fail)
//	emulator_test.go      (E) the patched emulator behaves as SQS where the
//	                      suite depends on it (test/emulators/PATCHES.md)
//
// The crash and SIGTERM tests run ./consumer as a child process; it logs
// what it does to a file the tests read. The package's one non-test
// function, ConfirmedPuts, is shared with it.
//
// Sizes: the default (short) mode keeps the package to about six minutes on
// two cores with -race (the two crash suites take about two each). SQSPOOL_LONG=1, or -long, runs the long variants.
// Random choices (crash points) are seeded; a failing run logs its seed,
// and SQSPOOL_FAULT_SEED replays it.
//
// No test sleeps to synchronise. Time on the fake runs on a clock.Manual
// that a driver goroutine moves forward (driver_test.go); tests wait for
// conditions (queue empty, every key stored), checked at every step, with a
// deadline that only guards against a hang.
package faults

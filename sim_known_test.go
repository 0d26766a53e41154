package sqspool

// simKnownDefects are what the pool at cd31227 breaks (issue 11, defects
// 1-9): the simulator leaves them out until the fixes land, and this file
// goes with them.
var simKnownDefects = []string{
	"panics", "inside", invDeadlineShort, invHeartbeatPast, invUnreported, invRetryOverridden,
	invSecondRun, invShutdownNil, invStall, invPastCap, invVisibleRunning, invBreakerProbes,
}

//go:build race

package sqspool

// simRace is true under the race detector, where the simulation runs
// simRaceSeeds by default (see simDefaultSeeds).
const simRace = true

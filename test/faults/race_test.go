//go:build race

package faults

// raceEnabled is true when the tests run with -race; the child consumer is
// then built with -race too.
const raceEnabled = true

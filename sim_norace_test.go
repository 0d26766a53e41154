//go:build !race

package sqspool

const simRace = false

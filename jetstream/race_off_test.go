//go:build !race

package jetstream_test

// raceDetector reports whether the tests run under -race; see skipUnderRace.
const raceDetector = false

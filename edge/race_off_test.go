//go:build !race

package edge

// raceDetector reports whether the tests run under -race; see skipUnderRace.
const raceDetector = false

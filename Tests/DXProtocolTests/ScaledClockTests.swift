import DXProtocol
import Foundation
import Testing

/// The test-speed clock: scaled, continuous across a change of speed, shared by its copies.
@Suite("Scaled clock")
struct ScaledClockTests {
    @Test func aChangeOfSpeedKeepsTimeContinuousAndReachesEveryCopy() async throws {
        let clock = ScaledClock(speed: 100)
        let copy = clock
        try await ContinuousClock().sleep(for: .milliseconds(20))
        let before = clock.now
        // At 100× the 20 ms took 2 s of clock time (more on a busy machine, never less).
        #expect(before.offset >= .seconds(2))
        #expect(copy.setSpeed(1))
        #expect(clock.speed == 1)
        let after = clock.now
        #expect(after >= before, "time went back across the change")
        try await ContinuousClock().sleep(for: .milliseconds(20))
        // At 1× the next 20 ms are 20 ms (a busy machine may stretch them, not 100-fold);
        // at the old speed they would have been 2 s.
        let step = after.duration(to: clock.now)
        #expect(step >= .milliseconds(20) && step < .seconds(1), "\(step)")
        // Refused: the speed stays.
        #expect(!clock.setSpeed(0) && !clock.setSpeed(-1) && !clock.setSpeed(.nan) && !clock.setSpeed(.infinity))
        #expect(clock.speed == 1)
    }

    @Test func aSleepEndsOnTheClocksTime() async throws {
        let clock = ScaledClock(speed: 1000)
        let start = clock.now
        try await clock.sleep(for: .seconds(2))
        #expect(start.duration(to: clock.now) >= .seconds(2))
    }
}

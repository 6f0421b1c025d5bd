import Synchronization

/// A clock that runs `speed` times faster than real time, from the moment it was made.
///
/// The daemon and the simulator take their time from an injected `Clock`; in production
/// that is real time (speed 1), in tests a scan of minutes passes in a fraction of a second.
/// Two processes that agree on the speed agree on durations (the origins differ, which no
/// part of the protocol depends on: the device's own timestamps travel in the frames).
///
/// The simulator's speed can change while it runs (`setSpeed`, `dexa-sim`'s `speed` command):
/// time stays continuous, and copies of the clock share the change. A fault test slows the
/// unit to real time while the host is dead, so that the watchdog acts on timers the machine's
/// scheduling cannot stretch twentyfold. A sleep begun before a change ends when the old speed
/// said (early after a slow-down, late after a speed-up); every sleeper here reads the clock
/// again when it wakes.
public struct ScaledClock: Clock, Sendable {
    public struct Instant: InstantProtocol, Sendable {
        /// Scaled time since the clock's origin.
        public var offset: Duration
        public init(offset: Duration) { self.offset = offset }
        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    /// The rate and the point it last changed, shared by every copy of the clock.
    private final class Rate: Sendable {
        struct State { var speed: Double; var wall: ContinuousClock.Instant; var offset: Duration }
        let state: Mutex<State>
        init(_ speed: Double) { state = Mutex(State(speed: speed, wall: .now, offset: .zero)) }
    }

    private let rate: Rate

    /// `speed` must be positive and finite; anything else falls back to real time.
    public init(speed: Double = 1) {
        rate = Rate((speed.isFinite && speed > 0) ? speed : 1)
    }

    public var speed: Double { rate.state.withLock { $0.speed } }

    /// From now on time runs `speed` times faster than real time (ignored unless positive
    /// and finite). Returns whether it was taken.
    @discardableResult
    public func setSpeed(_ speed: Double) -> Bool {
        guard speed.isFinite, speed > 0 else { return false }
        rate.state.withLock { s in
            let wall = ContinuousClock.now
            s.offset += (wall - s.wall).scaled(by: s.speed)
            s.wall = wall
            s.speed = speed
        }
        return true
    }

    public var now: Instant {
        rate.state.withLock { s in Instant(offset: s.offset + (ContinuousClock.now - s.wall).scaled(by: s.speed)) }
    }

    public var minimumResolution: Duration { ContinuousClock().minimumResolution.scaled(by: speed) }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let remaining = now.duration(to: deadline)
        if remaining <= .zero {
            try Task.checkCancellation()
            return
        }
        let speed = self.speed
        try await ContinuousClock().sleep(for: remaining.scaled(by: 1 / speed), tolerance: tolerance?.scaled(by: 1 / speed))
    }
}

extension Duration {
    public func scaled(by factor: Double) -> Duration {
        if factor == 1 { return self }
        let (s, atto) = components
        let seconds = (Double(s) + Double(atto) * 1e-18) * factor
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    /// Whole microseconds (negative durations give 0).
    public var microseconds: UInt64 {
        let (s, atto) = components
        if s < 0 { return 0 }
        return UInt64(s) * 1_000_000 + UInt64(atto / 1_000_000_000_000)
    }

    public var milliseconds: Double {
        let (s, atto) = components
        return Double(s) * 1000 + Double(atto) * 1e-15
    }

    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) * 1e-18
    }
}

/// Elapsed time on an injected clock since the stopwatch was made, readable from anywhere.
public struct Stopwatch: Sendable {
    private let read: @Sendable () -> Duration

    public init<C: Clock>(_ clock: C) where C.Duration == Duration {
        let start = clock.now
        read = { start.duration(to: clock.now) }
    }

    public init(any clock: any Clock<Duration>) {
        self.init(clock)
    }

    public var elapsed: Duration { read() }
}

extension Clock where Duration == Swift.Duration {
    /// Sleeps until `stopwatch` reads `target` (returns at once if it already does).
    public func sleep(untilElapsed target: Duration, on stopwatch: Stopwatch) async throws {
        let remaining = target - stopwatch.elapsed
        if remaining > .zero { try await sleep(for: remaining) } else { try Task.checkCancellation() }
    }
}

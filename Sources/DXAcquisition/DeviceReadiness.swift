import DXDevice
import DXProtocol

/// Waiting for the DX-1: for RESET to bring it back, and for it to leave BOOT. Both on the
/// clock the caller passes (the daemon passes the wall clock for RESET: the host's
/// reconnection takes host time), both with a limit and a sentence when it runs out.
public enum DeviceReadiness {
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        case notBack(Duration)
        case otherUnit(String, expected: String)
        case notReady(DeviceState?, Duration)

        public var description: String {
            switch self {
            case .notBack(let d): "the DX-1 did not come back within \(d) of RESET"
            case let .otherUnit(serial, expected): "a different unit came back after RESET (\(serial), expected \(expected))"
            case let .notReady(state, d): "the DX-1 is \(state.map { "\($0)" } ?? "not connected") after \(d), not IDLE"
            }
        }
    }

    /// RESET (ICD §3): the unit leaves the bus and comes back within 3 s with the same serial;
    /// the device service reconnects. Returns the unit that came back, how long it took and
    /// its state, once it is out of BOOT (a unit still in BOOT after 5 s more is a failure).
    public static func reset(session: DeviceSession, clock: any Clock<Duration>, limit: Duration = .seconds(10))
        async throws -> (info: DeviceInfo, after: Duration, state: DeviceState) {
        guard let before = await session.info else { throw DeviceError.notConnected }
        let notices = await session.notices()
        let started = Stopwatch(any: clock)
        do {
            _ = try await session.execute(.reset)
        } catch DeviceError.linkLost {
            // The unit left the bus before its answer got through: that is what RESET does.
        }
        let back: DeviceInfo? = await withTaskGroup(of: DeviceInfo?.self) { group in
            group.addTask {
                var left = false
                for await n in notices {
                    if case .linkLost = n { left = true }
                    if case .connected(let info) = n, left { return info }
                }
                return nil
            }
            group.addTask {
                try? await clock.sleep(for: limit)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let back else { throw Failure.notBack(limit) }
        guard back.serial == before.serial else { throw Failure.otherUnit(back.serial, expected: before.serial) }
        let state = try await waitUntilOutOfBoot(session: session, clock: clock, limit: .seconds(5))
        return (back, started.elapsed, state)
    }

    /// Polls GET_STATUS until the device has left BOOT (ICD §4: BOOT → IDLE after its
    /// self-test), at most `limit` of device time. Returns the state it reached.
    @discardableResult
    public static func waitUntilOutOfBoot(session: DeviceSession, clock: any Clock<Duration>, limit: Duration) async throws -> DeviceState {
        let watch = Stopwatch(any: clock)
        var last: DeviceState?
        while true {
            if await session.connected, let s = try? await session.refreshStatus() {
                last = s.state
                if s.state != .boot { return s.state }
            }
            if watch.elapsed >= limit { throw Failure.notReady(last, limit) }
            try await clock.sleep(for: .milliseconds(50))
        }
    }
}

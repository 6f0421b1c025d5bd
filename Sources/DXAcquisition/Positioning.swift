import DXDevice
import DXProtocol
import Foundation

/// Where a motion ended.
public struct MotionResult: Sendable, Equatable {
    public var xUm: Int32
    public var yUm: Int32
    public var armAngleX10: Int16
}

public enum MotionError: Error, Sendable, Equatable, CustomStringConvertible {
    case stopped(DeviceState)
    case linkLost(String)
    case timedOut(Duration)

    public var description: String {
        switch self {
        case .stopped(let s): "motion stopped: the device is \(s)"
        case .linkLost(let why): "link lost during motion: \(why)"
        case .timedOut(let d): "motion did not finish within \(d)"
        }
    }
}

/// HOME or MOVE, then the wait for MOTION_DONE (ICD §3): the gantry is where the next scan
/// needs it only when the device says so. A SAFE or FAULT state, a lost link or `limit` of
/// device time without MOTION_DONE end the wait with an error.
public enum Positioning {
    public static func move(_ command: Command, session: DeviceSession, clock: any Clock<Duration>,
                            limit: Duration = .seconds(60)) async throws -> MotionResult {
        let notices = await session.notices()
        _ = try await session.execute(command)
        let outcome: Result<MotionResult, MotionError> = await withTaskGroup(of: Result<MotionResult, MotionError>?.self) { group in
            group.addTask {
                for await n in notices {
                    switch n {
                    case let .event(.motionDone(x, y, a)): return .success(MotionResult(xUm: x, yUm: y, armAngleX10: a))
                    case let .event(.stateChanged(_, new)) where new == .safe || new == .fault: return .failure(.stopped(new))
                    case .linkLost(let why): return .failure(.linkLost(why))
                    default: continue
                    }
                }
                return nil
            }
            group.addTask {
                try? await clock.sleep(for: limit)
                return .failure(.timedOut(limit))
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(.linkLost("notices ended"))
        }
        return try outcome.get()
    }
}

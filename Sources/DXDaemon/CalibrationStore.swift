import DXControl
import DXDecomposition
import DXProtocol
import Foundation

/// The daemon's calibration: `STATE/calibration.json`, written by `service.calibrate`. It is
/// read again at every use, so a new calibration takes effect at once and a damaged file is
/// noticed before the next patient scan, not at start-up.
public struct CalibrationStore: Sendable {
    public let path: String
    public init(stateDirectory: String) { path = stateDirectory + "/calibration.json" }

    /// The stored calibration, or why there is none a patient may be measured with.
    public func load() -> Result<Calibration, CalibrationProblem> {
        guard let data = FileManager.default.contents(atPath: path) else { return .failure(.missing(path)) }
        let calibration: Calibration
        do { calibration = try JSONDecoder().decode(Calibration.self, from: data) } catch {
            return .failure(.unreadable(path, "\(error)"))
        }
        guard Calibration.readableVersions.contains(calibration.version) else {
            return .failure(.wrongVersion(path, calibration.version, expected: Calibration.formatVersion))
        }
        guard calibration.isWellFormed else { return .failure(.unreadable(path, "its models do not have the terms this version uses, or its channel response is not whole")) }
        // The one acceptance rule, the same as `dexa analyze` applies (CalibrationVerdict).
        let verdict = calibration.verdict
        guard verdict.accepted else { return .failure(.poorFit(path, verdict)) }
        return .success(calibration)
    }

    /// The stored calibration if it was made on `device` (a unit's calibration holds for that
    /// unit's tube and detector only; a file copied from another unit is refused).
    public func load(for device: DeviceInfo) -> Result<Calibration, CalibrationProblem> {
        load().flatMap { c in c.unitProblem(for: device).map { .failure(.otherUnit(path, $0)) } ?? .success(c) }
    }

    public func save(_ calibration: Calibration) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(calibration).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// Why the daemon will not measure a patient: each names what a service engineer does next.
public enum CalibrationProblem: ControlReportable, Sendable, Equatable, CustomStringConvertible {
    case missing(String)
    case unreadable(String, String)
    case wrongVersion(String, Int, expected: Int)
    case poorFit(String, CalibrationVerdict)
    case otherUnit(String, String)

    public var description: String {
        let fix = "run `dexa service calibrate` with the calibration phantom"
        return switch self {
        case .missing(let p): "no calibration (\(p) does not exist); \(fix)"
        case let .unreadable(p, why): "the calibration \(p) cannot be read (\(why)); \(fix)"
        case let .wrongVersion(p, v, e):
            "the calibration \(p) has format \(v), this daemon reads formats \(Calibration.readableVersions.lowerBound) to \(e); \(fix)"
        case let .poorFit(p, v): "\(p): \(v.description); \(fix)"
        case let .otherUnit(p, why): "\(p): \(why); \(fix) on this unit"
        }
    }

    public var rpcError: RPCError { RPCError(code: RPCError.notCalibratedCode, message: "patient scans are refused: \(description)") }
}

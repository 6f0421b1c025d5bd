import DXControl
import DXDecomposition
import Foundation

/// The daemon's calibration: `STATE/calibration.json`, written by `service.calibrate`. It is
/// read again at every use, so a new calibration takes effect at once and a damaged file is
/// noticed before the next patient scan, not at start-up.
public struct CalibrationStore: Sendable {
    public let path: String
    /// The largest bone fit residual (g/cm²) a usable calibration may have: at 0.01 the
    /// calibration itself costs 2 % at 0.5 g/cm².
    public static let maximumResidual = 0.01

    public init(stateDirectory: String) { path = stateDirectory + "/calibration.json" }

    /// The stored calibration, or why there is none a patient may be measured with.
    public func load() -> Result<Calibration, CalibrationProblem> {
        guard let data = FileManager.default.contents(atPath: path) else { return .failure(.missing(path)) }
        let calibration: Calibration
        do { calibration = try JSONDecoder().decode(Calibration.self, from: data) } catch {
            return .failure(.unreadable(path, "\(error)"))
        }
        guard calibration.version == Calibration.formatVersion else {
            return .failure(.wrongVersion(path, calibration.version, expected: Calibration.formatVersion))
        }
        guard calibration.isWellFormed else { return .failure(.unreadable(path, "its models do not have the terms this version uses")) }
        guard calibration.residualHydroxyapatite.isFinite, calibration.residualHydroxyapatite <= Self.maximumResidual else {
            return .failure(.poorFit(path, calibration.residualHydroxyapatite))
        }
        return .success(calibration)
    }

    public func save(_ calibration: Calibration) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(calibration).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// Why the daemon will not measure a patient: each names what a service engineer does next.
public enum CalibrationProblem: Error, Sendable, Equatable, CustomStringConvertible {
    case missing(String)
    case unreadable(String, String)
    case wrongVersion(String, Int, expected: Int)
    case poorFit(String, Double)

    public var description: String {
        let fix = "run `dexa service calibrate` with the calibration phantom"
        return switch self {
        case .missing(let p): "no calibration (\(p) does not exist); \(fix)"
        case let .unreadable(p, why): "the calibration \(p) cannot be read (\(why)); \(fix)"
        case let .wrongVersion(p, v, e): "the calibration \(p) has format \(v), this daemon needs \(e); \(fix)"
        case let .poorFit(p, r): String(format: "the calibration %@ fits its phantom to %.4f g/cm², worse than %.2f; ", p, r, CalibrationStore.maximumResidual) + fix
        }
    }

    var rpcError: RPCError { RPCError(code: RPCError.notCalibratedCode, message: "patient scans are refused: \(description)") }
}

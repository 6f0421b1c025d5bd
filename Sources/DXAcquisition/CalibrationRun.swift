import DXDecomposition
import DXProtocol
import Foundation

/// `service.calibrate` on the device: dark and air scans in the air zone, then the one
/// calibration procedure (`CalibrationProcedure`: the phantom at two exposures and nine
/// carriage positions) into one capture, read back and fitted. Whether the fit is accepted
/// is the caller's (`Calibration.verdict`); nothing here stores it.
public enum CalibrationRun {
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The request cannot make a calibration (no cells, a line step out of range, a pass
        /// the device would refuse): refused before anything moves.
        case invalid(String)
        case noCapture
        case unreadableCapture(String, String)
        case fit(String)

        public var description: String {
            switch self {
            case .invalid(let why): why
            case .noCapture: "captures are disabled; a calibration needs one"
            case let .unreadableCapture(path, why): "cannot read back \(path): \(why)"
            case .fit(let why): "calibration failed: \(why)"
            }
        }
    }

    /// The line steps a request may ask for (µm).
    public static let lineStepRange: ClosedRange<Int32> = 1...100_000

    /// The scans, every one checked against the device's limits before the first exposes.
    public static func plans(phantom: Phantom, info: DeviceInfo, lineStepUm: Int32? = nil) throws(Failure) -> [ScanPlan] {
        guard let cells = phantom.cells, !cells.isEmpty else { throw .invalid("the phantom has no cells") }
        if let step = lineStepUm, !lineStepRange.contains(step) { throw .invalid("line_step_um must be 1 to 100000, not \(step)") }
        let procedure = lineStepUm.map { CalibrationProcedure(phantom: phantom, travelXUm: info.travelXUm, stepUm: $0) }
            ?? CalibrationProcedure(phantom: phantom, travelXUm: info.travelXUm)
        guard let procedure, let firstX = procedure.passes.first?.xUm else { throw .invalid("the phantom's cells have no extent") }
        let plans = ScanPlan.references(xUm: firstX, info: info) + [ScanPlan.lowRateAir(xUm: firstX, info: info)] + procedure.passes.map { p in
            ScanPlan(mode: .dual, xUm: p.xUm, yStartUm: p.yStartUm, lineCount: p.lineCount, lineStepUm: p.lineStepUm, linePeriodUs: p.linePeriodUs,
                     tubeCurrentUA: p.tubeCurrentUA, linesPerFrame: p.linesPerFrame, role: .calibration)
        }
        for plan in plans {
            if let why = plan.configuration(id: 1).violation(for: info) { throw .invalid("a calibration pass would be refused: \(why)") }
        }
        return plans
    }

    /// Runs the scans and fits the calibration from the capture they made.
    public static func run(runner: ScanRunner, phantom: Phantom, info: DeviceInfo, lineStepUm: Int32? = nil) async throws -> (calibration: Calibration, capture: String) {
        let plans = try plans(phantom: phantom, info: info, lineStepUm: lineStepUm)
        let (_, capture) = try await runner.runSequence(plans, phantom: phantom)
        guard let capture else { throw Failure.noCapture }
        let contents: CaptureFormat.Contents
        do { contents = try CaptureFormat.parse(Array(try Data(contentsOf: URL(fileURLWithPath: capture)))) } catch {
            throw Failure.unreadableCapture(capture, "\(error)")
        }
        let geometry = ScanGeometry(channels: Int(info.channels), pitchUm: Int(info.pitchUm))
        do {
            let calibration = try CaptureAnalysis.calibration(from: CaptureReader.scans(in: contents), phantom: phantom, geometry: geometry,
                                                              source: capture, unit: CalibratedUnit(contents.header.device),
                                                              coverage: .refuseGaps)
            return (calibration, capture)
        } catch {
            throw Failure.fit(error.description)
        }
    }
}

import DXDecomposition
import DXProtocol
import Foundation

/// The daily QC scan of the spine phantom (docs/qc.md): dark and air in the air zone, then
/// one pass over the phantom's ROIs at the exposure the decomposition's accuracy and precision
/// tests use on the ESP phantom (0.5 mm lines of 40 ms at 3 mA, docs/physics.md), 20 mm
/// beyond the ROIs each way; its ROIs are measured live with the unit's calibration. What the
/// rules make of the result is `QualityControl`'s; storing it is the caller's.
public enum QCRun {
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The phantom or the pass cannot make a QC scan: refused before anything moves.
        case invalid(String)
        /// The scan's result cannot be a QC result (lines missing, the phantom not under the
        /// ROIs): nothing is added to the history.
        case unusable(String)

        public var description: String {
            switch self {
            case .invalid(let why): why
            case .unusable(let why): "not a QC result, nothing added: \(why)"
            }
        }
    }

    /// Margin beyond the ROIs, line step and exposure of the pass.
    static let marginUm: Int32 = 20_000, lineStepUm: Int32 = 500, linePeriodUs: UInt32 = 40_000, tubeCurrentUA: UInt32 = 3000

    /// The least BMD an ROI over a phantom's vertebra can read (g/cm²): below it the ROI lies
    /// over soft tissue or air (the wrong phantom, or the phantom off-centre). The ESP
    /// phantom's least is 0.5.
    public static let leastBMDGCm2 = 0.1

    /// The scans, every one checked against the device's limits before the first exposes.
    public static func plans(phantom: Phantom, info: DeviceInfo) throws(Failure) -> [ScanPlan] {
        guard let rois = phantom.rois, !rois.isEmpty else { throw .invalid("the phantom '\(phantom.name)' has no ROIs: a QC phantom names the regions it measures") }
        guard rois.allSatisfy({ $0.xUm.count == 2 && $0.yUm.count == 2 && $0.xUm[0] < $0.xUm[1] && $0.yUm[0] < $0.yUm[1] }) else {
            throw .invalid("the phantom '\(phantom.name)' has an ROI that is not a rectangle ([x0, x1], [y0, y1] in µm, x0 < x1, y0 < y1)")
        }
        guard Set(rois.map(\.name)).count == rois.count else { throw .invalid("the phantom '\(phantom.name)' names an ROI twice") }
        let x0 = rois.map { Int64($0.xUm[0]) }.min() ?? 0, x1 = rois.map { Int64($0.xUm[1]) }.max() ?? 0
        let y0 = rois.map { Int64($0.yUm[0]) }.min() ?? 0, y1 = rois.map { Int64($0.yUm[1]) }.max() ?? 0
        let start = y0 - Int64(marginUm), span = y1 - y0 + 2 * Int64(marginUm)
        guard start >= 0, let first = Int32(exactly: start), let x = Int32(exactly: (x0 + x1) / 2) else {
            throw .invalid("the phantom's ROIs lie outside the table")
        }
        let lines = UInt32(clamping: (span + Int64(lineStepUm) - 1) / Int64(lineStepUm))
        let pass = ScanPlan(mode: .dual, xUm: x, yStartUm: first, lineCount: lines, lineStepUm: lineStepUm,
                            linePeriodUs: max(linePeriodUs, UInt32(clamping: info.minLinePeriodUs)), tubeCurrentUA: tubeCurrentUA,
                            linesPerFrame: 1, role: .qc)
        let plans = ScanPlan.references(xUm: x, info: info) + [pass]
        for plan in plans {
            if let why = plan.configuration(id: 1).violation(for: info) { throw .invalid("the QC pass would be refused: \(why)") }
        }
        return plans
    }

    /// The scout before the pass: a dark scan and a few fast lines over the phantom, as before
    /// a patient's site (`ExposureModeChooser.scout`). The pass's current then follows what
    /// they show, with the same rule as a patient's (`exposed`), so that a unit that counts
    /// more photons than this one does not saturate the phantom's soft tissue, the reference
    /// its bone is measured against (docs/qc.md).
    public static func scoutPlans(_ plans: [ScanPlan]) -> [ScanPlan] {
        guard let dark = plans.first(where: { $0.mode == .dark }), let pass = plans.last else { return [] }
        let s = ExposureModeChooser.scout(of: pass.configuration(id: 0))
        return [dark, ScanPlan(mode: .dual, xUm: s.xUm, yStartUm: s.yStartUm, lineCount: s.lineCount, lineStepUm: s.lineStepUm,
                               linePeriodUs: s.linePeriodUs, tubeCurrentUA: s.tubeCurrentUA, linesPerFrame: s.linesPerFrame, role: .qc)]
    }

    /// The plans with the pass's current chosen from the scout (its dark scan and its lines);
    /// refused when the scout did not give what a choice needs. `unmixing`: the calibration's,
    /// so that a detector whose windows mix is judged by its photons as an exam's scout is;
    /// `boneNoise`: the calibration's noise per photon, likewise.
    public static func exposed(_ plans: [ScanPlan], darkLines: [ScanLine], scoutLines: [ScanLine],
                               unmixing: ExposureModeChooser.Unmixing? = nil,
                               boneNoise: ExposureModeChooser.BoneNoise? = nil) throws(Failure) -> (plans: [ScanPlan], choice: ExposureModeChooser.Choice) {
        guard let pass = plans.last, let scout = scoutPlans(plans).last else { throw .invalid("no QC pass to expose") }
        guard !scoutLines.isEmpty, scoutLines.count == Int(scout.lineCount), let dark = try? DarkReference(lines: darkLines) else {
            throw .unusable("the scout before the pass was incomplete (\(scoutLines.count) of \(scout.lineCount) lines)")
        }
        let choice = ExposureModeChooser().choose(scout: scoutLines, scoutPeriodUs: scout.linePeriodUs, scoutCurrentUA: scout.tubeCurrentUA,
                                                  dark: dark, periodUs: pass.linePeriodUs, currentUA: pass.tubeCurrentUA, bmi: nil, unmixing: unmixing,
                                                  boneNoise: boneNoise)
        var out = plans
        out[out.count - 1].tubeCurrentUA = choice.current(standard: pass.tubeCurrentUA)
        return (out, choice)
    }

    /// The regions' BMD from the scan's live result: every line there, every ROI complete and
    /// over bone. Anything else is refused, so that nothing partial enters a baseline.
    public static func measurement(_ live: LiveResult, phantom: Phantom) throws(Failure) -> [String: Double] {
        guard live.complete, live.missingLines == 0 else {
            throw .unusable("the scan is incomplete (\(live.missingLines) lines missing of \(live.lines + live.missingLines))")
        }
        let names = Set((phantom.rois ?? []).map(\.name))
        guard Set(live.rois.map(\.name)) == names else { throw .unusable("the scan measured \(live.rois.map(\.name).sorted()), the phantom names \(names.sorted())") }
        var out: [String: Double] = [:]
        for r in live.rois {
            guard r.complete else { throw .unusable("\(r.name) is incomplete (\(r.missingLines) lines missing, \(r.unmeasuredPixels) pixels without a number)") }
            guard r.bmdGcm2.isFinite, r.bmdGcm2 >= leastBMDGCm2 else {
                throw .unusable(String(format: "%@ reads %.3f g/cm²: the ROI is not over the phantom's bone (the wrong phantom, or the phantom off-centre)", r.name, r.bmdGcm2))
            }
            out[r.name] = r.bmdGcm2
        }
        return out
    }
}

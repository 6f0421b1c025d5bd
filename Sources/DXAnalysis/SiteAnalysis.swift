import DXClinical
import DXDecomposition
import DXProtocol
import Foundation

/// Why a site has no result: one sentence for the technologist and the report.
public struct SiteAnalysisError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The one entry point for a patient scan's analysis, live in the exam and offline in
/// `dexa analyze`: the region in the scan's provenance chooses the analysis.
public enum SiteAnalysis {
    /// `correction`: a technologist's correction of the ROIs, applied over the automatic
    /// analysis; the result carries it.
    public static func analyze(_ scan: DecomposedScan, patient: PatientContext?, reference: ReferenceSet = .nhanes,
                               correction: ROICorrection? = nil) -> Result<SiteResult, SiteAnalysisError> {
        let correction = correction?.isEmpty == false ? correction : nil
        func corrected(_ r: SiteResult) -> SiteResult {
            var r = r
            r.correction = correction
            return r
        }
        // A single-energy image (`SingleEnergyDecomposer`) holds no density: only the lateral
        // spine's morphometry reads it (docs/analysis.md, "Single-energy lateral scans").
        if scan.provenance.singleEnergy == true, scan.provenance.region != "lateral_spine" {
            return .failure(SiteAnalysisError("a single-energy scan has no bone mineral density: scan the \(scan.provenance.region ?? "site") in dual-energy mode"))
        }
        switch scan.provenance.region {
        case "ap_spine":
            do {
                let m = try SpineAnalysis.measure(scan, correction: correction)
                return .success(corrected(SpineAnalysis.interpret(m, reference: reference, patient: patient)))
            } catch {
                return .failure(SiteAnalysisError(error.description))
            }
        case "left_hip", "right_hip":
            do {
                let m = try HipAnalysis.measure(scan, correction: correction)
                return .success(corrected(HipAnalysis.interpret(m, reference: reference, patient: patient)))
            } catch {
                return .failure(SiteAnalysisError(error.description))
            }
        case "lateral_spine":
            if let why = correction?.problem(site: "lateral_spine") { return .failure(SiteAnalysisError(why)) }
            do {
                let m = try VertebralMorphometry.measure(scan, correction: correction)
                var warnings = m.warnings
                if scan.provenance.singleEnergy == true {
                    warnings.append(AnalysisWarning(code: "single_energy",
                                                    message: "measured on a single-energy image: where bone overlaps the bodies (the shoulder blades) more of them are left unread than on a dual-energy scan"))
                }
                var r = SiteResult(site: "lateral_spine", rois: [], warnings: warnings, interpretation: nil, reference: reference.label,
                                   analysisVersion: AnalysisVersion.current, spine: nil)
                r.vfa = m
                return .success(corrected(r))
            } catch {
                return .failure(error)
            }
        case let other?:
            return .failure(SiteAnalysisError("no analysis for a scan of region \(other)"))
        case nil:
            return .failure(SiteAnalysisError("the scan names no region (ap_spine, left_hip, right_hip, lateral_spine): no automatic analysis"))
        }
    }
}

extension AnalysisWarning {
    /// The soft tissue over the measured bone is thicker than the calibration's thickest cell
    /// (`DecomposedScan.Provenance.calibratedSoftTissueGCm2`): the BMD rests on the
    /// calibration's models beyond its cells (continued by its effective spectra since
    /// 2026-12-07; docs/physics.md: patients of 34 g/cm², 34–35 g/cm² over L1–L4 against the
    /// phantom's 31, read L1–L4 +1.6 %). The mean over the measured bone
    /// pixels of the soft tissue under them. Nil within the calibration, or when the scan does
    /// not say how far it reaches (decomposed before it was kept).
    static func beyondCalibration(_ scan: DecomposedScan, softTissueGCm2 soft: Double, over what: String) -> AnalysisWarning? {
        guard let limit = scan.provenance.calibratedSoftTissueGCm2, limit > 0, soft.isFinite, soft > limit else { return nil }
        return AnalysisWarning(code: "soft_tissue_beyond_calibration",
                               message: String(format: "the soft tissue over %@ (%.1f g/cm²) is thicker than the calibration phantom's thickest (%.1f g/cm²): its BMD rests on the calibration extrapolated; compare follow-ups with care",
                                               what, soft, limit),
                               value: soft, unit: "g/cm²")
    }

    /// The patient moved during the scan (`DecomposedScan.motion`): where, and `across` (the
    /// regions the movement runs through, when the analysis can name them); `read`: they were
    /// measured anyway (the lateral spine, whose heights the movement does not stretch). Nil
    /// for a still scan.
    static func moved(_ scan: DecomposedScan, across: [String] = [], read: Bool = false) -> AnalysisWarning? {
        guard !scan.motion.isEmpty else { return nil }
        let moves = scan.motion.map { String(format: "%+.1f mm at line %d", $0.shiftMM, $0.line) }.joined(separator: ", ")
        let them = across.count == 1 ? "its" : "their"
        let through = if across.isEmpty { read ? "between the bodies read" : "the image is stepped there: check the ROIs across it" }
            else if read { "through \(across.joined(separator: ", ")) (measured: check \(them) points, and repeat the scan if they miss the endplates)" }
            else { "through \(across.joined(separator: ", ")): \(them) outline is stepped there; check \(them) ROI, and repeat the scan if the step shows" }
        return AnalysisWarning(code: "patient_moved", message: "the patient moved (\(moves)): \(through)",
                               value: scan.motion.map { abs($0.shiftMM) }.max(), unit: "mm")
    }
}

extension PatientContext {
    /// From a stored sex and birth date (YYYY-MM-DD) on the day of the scan; nil when either
    /// is unreadable or the birth date is after the scan.
    /// Who a capture's header says was scanned, aged on the day the capture was made; nil
    /// without a patient or with a sex or birth date that cannot be read.
    public init?(capture header: CaptureHeader) {
        guard let p = header.patient else { return nil }
        self.init(sex: p.sex, birthDate: p.birthDate, on: ISO8601DateFormatter().date(from: header.created) ?? Date())
    }

    public init?(sex: String, birthDate: String, on day: Date) {
        guard let s = Applicability.Sex(rawValue: sex), let age = Self.age(birthDate: birthDate, on: day) else { return nil }
        self.init(sex: s, ageYears: age)
    }

    /// Completed years and the fraction of the current one, in UTC.
    public static func age(birthDate: String, on day: Date) -> Double? {
        let parts = birthDate.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 3 else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        guard let born = calendar.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2])),
              calendar.component(.year, from: born) == parts[0], calendar.component(.month, from: born) == parts[1],
              calendar.component(.day, from: born) == parts[2], born <= day else { return nil }
        let years = calendar.dateComponents([.year], from: born, to: day).year ?? 0
        guard let anniversary = calendar.date(byAdding: .year, value: years, to: born),
              let next = calendar.date(byAdding: .year, value: 1, to: anniversary) else { return Double(years) }
        return Double(years) + day.timeIntervalSince(anniversary) / next.timeIntervalSince(anniversary)
    }
}

/// `dexa analyze --json` on a patient scan (ICD §9: "the automatic analysis for a patient
/// scan"): the capture's facts as for a phantom, with `rois` the site's clinical ROIs (`L1`
/// … `L4`, `L1-L4`), their scores and exclusions, the findings, and, when no analysis was
/// possible, why (`analysis_error`, and no ROI).
public struct PatientScanReport: Sendable, Codable, Equatable {
    public var region: String?
    public var rois: [ClinicalROI]
    public var warnings: [AnalysisWarning]
    public var interpretation: SiteInterpretation?
    public var patient: PatientContext?
    public var reference: String?
    public var analysisVersion: String?
    public var analysisError: String?
    public var spine: SpineMeasurement?
    public var hip: HipMeasurement?
    /// The lateral spine: T4–L4 with heights, grade, type and whether each could be read.
    public var vertebrae: [VertebralBody]?
    public var vfaSummary: String?
    public var motion: [MotionEvent]
    public var lines: Int
    public var plannedLines: Int
    public var missingLines: Int
    public var missingLineRanges: [[Int]]
    /// No line missing and every ROI complete.
    public var complete: Bool
    public var calibrationResidualGCm2: Double
    public var calibration: CalibrationVerdict
    public var forced: Bool

    public enum CodingKeys: String, CodingKey {
        case region, rois, warnings, interpretation, patient, reference, spine, hip, vertebrae, motion, lines, complete, calibration, forced
        case vfaSummary = "vfa_summary"
        case analysisVersion = "analysis_version", analysisError = "analysis_error", plannedLines = "planned_lines", missingLines = "missing_lines"
        case missingLineRanges = "missing_line_ranges", calibrationResidualGCm2 = "calibration_residual_g_cm2"
    }

    public init(_ capture: AnalysisReport, region: String?, site: Result<SiteResult, SiteAnalysisError>, patient: PatientContext?) {
        self.region = region
        self.patient = patient
        switch site {
        case .success(let r):
            rois = r.rois; warnings = r.warnings; interpretation = r.interpretation; reference = r.reference
            analysisVersion = r.analysisVersion; spine = r.spine; hip = r.hip
            vertebrae = r.vfa?.vertebrae; vfaSummary = r.vfa?.summary
        case .failure(let why):
            rois = []; warnings = []; analysisError = why.description
        }
        motion = capture.motion; lines = capture.lines; plannedLines = capture.plannedLines; missingLines = capture.missingLines
        missingLineRanges = capture.missingLineRanges
        complete = capture.missingLines == 0 && rois.allSatisfy(\.complete) && analysisError == nil
        calibrationResidualGCm2 = capture.calibrationResidualGCm2; calibration = capture.calibration; forced = capture.forced
    }
}

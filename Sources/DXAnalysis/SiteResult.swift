import DXClinical
import Foundation

/// Who was scanned, as far as the numbers need it.
public struct PatientContext: Sendable, Codable, Equatable {
    public var sex: Applicability.Sex
    public var ageYears: Double

    public enum CodingKeys: String, CodingKey {
        case sex
        case ageYears = "age_years"
    }

    public init(sex: Applicability.Sex, ageYears: Double) { self.sex = sex; self.ageYears = ageYears }
}

/// One region of interest as `dexa analyze`, `exam.results` and the report give it: the names
/// are fixed (`L1` … `L4`, `L1-L4`; for hips `neck`, `trochanter`, `intertrochanter`,
/// `total_hip`, `wards`) so that outside tools can rely on them.
public struct ClinicalROI: Sendable, Codable, Equatable {
    public var name: String
    public var bmdGCm2: Double?
    public var bmcG: Double
    public var areaCm2: Double
    /// Against the young-adult reference; present when the patient is known.
    public var tScore: Double?
    /// Against an age- and sex-matched reference; absent while none is installed.
    public var zScore: Double?
    public var excluded: Bool
    public var reason: String?
    /// No line missing in it.
    public var complete: Bool
    /// False for ROIs shown but never used to diagnose (Ward's area).
    public var forDiagnosis: Bool
    /// For `L1-L4`: the vertebrae its BMD is over.
    public var vertebraeUsed: [String]?

    public enum CodingKeys: String, CodingKey {
        case name, excluded, reason, complete
        case bmdGCm2 = "bmd_g_cm2", bmcG = "bmc_g", areaCm2 = "area_cm2", tScore = "t_score", zScore = "z_score"
        case forDiagnosis = "for_diagnosis", vertebraeUsed = "vertebrae_used"
    }

    public init(name: String, bmdGCm2: Double?, bmcG: Double, areaCm2: Double, tScore: Double? = nil, zScore: Double? = nil,
                excluded: Bool = false, reason: String? = nil, complete: Bool = true, forDiagnosis: Bool = true, vertebraeUsed: [String]? = nil) {
        self.name = name; self.bmdGCm2 = bmdGCm2; self.bmcG = bmcG; self.areaCm2 = areaCm2; self.tScore = tScore; self.zScore = zScore
        self.excluded = excluded; self.reason = reason; self.complete = complete; self.forDiagnosis = forDiagnosis; self.vertebraeUsed = vertebraeUsed
    }
}

/// What the scores say for this patient at this site.
public struct SiteInterpretation: Sendable, Codable, Equatable {
    /// Whom the classification applies to, and why (`Applicability`).
    public var basis: String
    /// The WHO class of the site's diagnostic ROI (women after menopause, men ≥ 50).
    public var whoClass: WHOClass?
    /// The Z-score's reading (premenopausal women, men < 50), when a Z-score exists.
    public var zInterpretation: ZInterpretation?
    /// Why a class is missing, when it is.
    public var note: String?

    public enum CodingKeys: String, CodingKey {
        case basis, note
        case whoClass = "who_class", zInterpretation = "z_interpretation"
    }
}

/// One site analysed and interpreted: the value `dexa analyze`, the exam's results and the
/// report share (one code path, live and offline).
public struct SiteResult: Sendable, Codable, Equatable {
    /// `ap_spine`, `left_hip`, `right_hip`.
    public var site: String
    public var rois: [ClinicalROI]
    public var warnings: [AnalysisWarning]
    public var interpretation: SiteInterpretation?
    /// The reference set's name and version the scores used.
    public var reference: String
    /// The analysis's version: a result says which rules made it.
    public var analysisVersion: String
    public var spine: SpineMeasurement?
    public var hip: HipMeasurement?
    /// The lateral spine's vertebral fracture assessment.
    public var vfa: VFAMeasurement?
    /// The technologist's correction the ROIs were placed with (nil: as the analysis placed them).
    public var correction: ROICorrection?

    public enum CodingKeys: String, CodingKey {
        case site, rois, warnings, interpretation, reference, spine, hip, vfa, correction
        case analysisVersion = "analysis_version"
    }

    public init(site: String, rois: [ClinicalROI], warnings: [AnalysisWarning], interpretation: SiteInterpretation?, reference: String,
                analysisVersion: String, spine: SpineMeasurement?, hip: HipMeasurement? = nil) {
        self.site = site; self.rois = rois; self.warnings = warnings; self.interpretation = interpretation; self.reference = reference
        self.analysisVersion = analysisVersion; self.spine = spine; self.hip = hip
    }

    public func roi(_ name: String) -> ClinicalROI? { rois.first { $0.name == name } }
}

public enum AnalysisVersion {
    /// Bumped whenever a rule or parameter changes a number (or a warning: hip-2 says a
    /// trochanter at the field's edge; vfa-4 grades a body with a corner's height uncertain).
    public static let current = "spine-2 hip-2 vfa-4 (2026-12-05)"
}

extension SpineAnalysis {
    /// The spine's clinical ROIs: L1 … L4 with T-scores (each against the L1–L4 reference,
    /// docs/analysis.md), the ISCD exclusions (structural first, then the 1.0 T-score rule,
    /// never fewer than two), and `L1-L4` over the vertebrae used (BMC sum over area sum).
    public static func interpret(_ m: SpineMeasurement, reference: ReferenceSet = .nhanes, patient: PatientContext?) -> SiteResult {
        let names = ["L1", "L2", "L3", "L4"]
        let ref = reference.youngAdult(.lumbarSpine)
        func t(_ bmd: Double?) -> Double? {
            guard let bmd, let ref else { return nil }
            return standardScore(bmdGCm2: bmd, meanGCm2: ref.meanGCm2, sdGCm2: ref.sdGCm2)
        }
        // Z against the L1–L4 table, like T (docs/clinical-references.md).
        func z(_ bmd: Double?) -> Double? { patient.flatMap { reference.zScore(bmd, site: .lumbarSpine, sex: $0.sex, ageYears: $0.ageYears) } }
        let incomplete = m.warnings.contains { $0.code == "scan_incomplete" }
        let absent = incomplete ? "not measured: the scan is incomplete" : "not in the field"
        var abnormal: [String: String] = [:]
        var scored: [(name: String, tScore: Double)] = []
        for name in names {
            guard let v = m.vertebra(name) else { abnormal[name] = absent; continue }
            if let why = v.abnormality { abnormal[name] = why }
            else if !v.complete { abnormal[name] = "\(v.missingLines) lines of its ROI missing" }
            scored.append((name, t(v.bmdGCm2) ?? .nan))
        }
        for name in names where m.vertebra(name) == nil { scored.append((name, .nan)) }
        scored.sort { names.firstIndex(of: $0.name) ?? 0 < names.firstIndex(of: $1.name) ?? 0 }
        let selection = selectVertebrae(scored, abnormal: abnormal)
        let reasons = Dictionary(selection.excluded.map { ($0.name, $0.reason) }, uniquingKeysWith: { a, _ in a })
        let known = patient != nil
        var rois: [ClinicalROI] = names.compactMap { name in
            guard let v = m.vertebra(name) else {
                return ClinicalROI(name: name, bmdGCm2: nil, bmcG: 0, areaCm2: 0, excluded: true, reason: absent, complete: false)
            }
            let excluded = !selection.used.contains(name)
            return ClinicalROI(name: name, bmdGCm2: v.bmdGCm2, bmcG: v.bmcG, areaCm2: v.areaCm2, tScore: known ? t(v.bmdGCm2).map(reportedScore) : nil,
                               zScore: z(v.bmdGCm2), excluded: excluded, reason: excluded ? reasons[name] : nil, complete: v.complete)
        }
        let used = selection.used.compactMap { m.vertebra($0) }
        let bmc = used.reduce(0) { $0 + $1.bmcG }, area = used.reduce(0) { $0 + $1.areaCm2 }
        // A vertebra of L1–L4 not measured (a stopped scan, or out of the field) gives no spine
        // BMD: which vertebrae would have been used is unknown, and a positioning failure is
        // not an ISCD exclusion.
        let unscanned = names.filter { m.vertebra($0) == nil }
        let totalBMD: Double? = selection.tooFew || area <= 0 || !unscanned.isEmpty ? nil : bmc / area
        let totalReason = !unscanned.isEmpty
            ? (incomplete ? "the scan is incomplete: \(unscanned.joined(separator: ", ")) not measured"
                          : "\(unscanned.joined(separator: ", ")) not in the field (rescan from the iliac crests to T12)")
            : "fewer than two evaluable vertebrae (ISCD: never one alone)"
        rois.append(ClinicalROI(name: "L1-L4", bmdGCm2: totalBMD, bmcG: totalBMD == nil ? 0 : bmc, areaCm2: totalBMD == nil ? 0 : area,
                                tScore: known ? t(totalBMD).map(reportedScore) : nil, zScore: z(totalBMD),
                                excluded: totalBMD == nil, reason: totalBMD == nil ? totalReason : nil,
                                complete: used.allSatisfy(\.complete), vertebraeUsed: selection.used))
        var warnings = m.warnings
        if ref?.status == .secondary {
            warnings.append(AnalysisWarning(code: "reference_secondary", message: "the spine reference is not yet checked against its primary source"))
        }
        warnings += zReferenceWarnings(reference, rois: rois)
        let total = rois.last
        let interpretation = patient.map { interpretSite(diagnosticT: total?.tScore, diagnosticZ: total?.excluded == false ? total?.zScore : nil,
                                                         patient: $0, reference: reference) }
        return SiteResult(site: "ap_spine", rois: rois, warnings: warnings, interpretation: interpretation,
                          reference: reference.label, analysisVersion: AnalysisVersion.current, spine: m)
    }

    /// The site's reading: the WHO class on T for women and men aged 50 and over; on Z (below or
    /// within the expected range for age) for those under 50, when a Z-score reference is
    /// installed and has the patient's age.
    static func interpretSite(diagnosticT: Double?, diagnosticZ: Double?, patient: PatientContext, reference: ReferenceSet) -> SiteInterpretation {
        let applicability = Applicability(sex: patient.sex, ageYears: patient.ageYears)
        switch applicability {
        case .who(let reason):
            guard let t = diagnosticT else { return SiteInterpretation(basis: reason, note: "no T-score: the site has no BMD") }
            return SiteInterpretation(basis: reason, whoClass: WHOClass(tScore: t))
        case .zScoreOnly(let reason):
            if let z = diagnosticZ { return SiteInterpretation(basis: reason, zInterpretation: ZInterpretation(zScore: z)) }
            let why = reference.ageMatched == nil
                ? "Z-scores apply, and no age- and sex-matched reference is installed: no classification (docs/clinical-references.md)"
                : "Z-scores apply, and the site has no Z-score (no BMD, or the installed reference has no band for this age and sex)"
            return SiteInterpretation(basis: reason, note: why)
        }
    }

    /// A Z-score reference not checked against its primary source says so wherever it scored.
    static func zReferenceWarnings(_ reference: ReferenceSet, rois: [ClinicalROI]) -> [AnalysisWarning] {
        guard let z = reference.ageMatched, z.status == .secondary, rois.contains(where: { $0.zScore != nil }) else { return [] }
        return [AnalysisWarning(code: "z_reference_secondary", message: "the Z-score reference \(z.name) \(z.version) is not yet checked against its primary source")]
    }
}

extension HipAnalysis {
    /// The hip's clinical ROIs in the order a report gives them: `neck`, `trochanter`,
    /// `intertrochanter`, `total_hip`, `wards`. T-scores for the neck and the total hip (the
    /// only hip regions with a reference and the only ones ISCD lets diagnose); the others are
    /// shown and marked not for diagnosis. The site's class is on the lower of the two.
    public static func interpret(_ m: HipMeasurement, reference: ReferenceSet = .nhanes, patient: PatientContext?) -> SiteResult {
        let diagnostic: [String: ReferenceSite] = ["neck": .femoralNeck, "total_hip": .totalHip]
        let totalMissing = m.warnings.first { $0.code == "total_hip_not_measured" }?.message
        var rois: [ClinicalROI] = []
        var warnings = m.warnings
        for name in ["neck", "trochanter", "intertrochanter", "total_hip", "wards"] {
            let site = diagnostic[name]
            guard let r = m.roi(name), let bmd = r.bmdGCm2 else {
                let why = name == "neck" ? "not measured" : (totalMissing ?? "not measured")
                rois.append(ClinicalROI(name: name, bmdGCm2: nil, bmcG: 0, areaCm2: 0, excluded: true, reason: why, complete: false,
                                        forDiagnosis: site != nil))
                continue
            }
            var t: Double?
            let z = site.flatMap { site in patient.flatMap { reference.zScore(bmd, site: site, sex: $0.sex, ageYears: $0.ageYears) } }
            if let site, patient != nil, let ref = reference.youngAdult(site) {
                t = standardScore(bmdGCm2: bmd, meanGCm2: ref.meanGCm2, sdGCm2: ref.sdGCm2).map(reportedScore)
                if ref.status == .secondary && !warnings.contains(where: { $0.code == "reference_secondary" }) {
                    warnings.append(AnalysisWarning(code: "reference_secondary", message: "the hip references are not yet checked against their primary source"))
                }
            }
            // Lines missing in it, or (the total hip and its parts) pelvis joined to the femur.
            let pelvis = name != "neck" && name != "wards" && m.warnings.contains { $0.code == "pelvis_touches_femur" }
            let why = !r.complete ? "\(r.missingLines) lines of its ROI missing" : (pelvis ? "may include pelvis (the ischium touches the femur)" : nil)
            let excluded = why != nil && site != nil
            rois.append(ClinicalROI(name: name, bmdGCm2: bmd, bmcG: r.bmcG, areaCm2: r.areaCm2, tScore: t, zScore: z, excluded: excluded,
                                    reason: why, complete: r.complete, forDiagnosis: site != nil))
        }
        let lowest = rois.filter { $0.forDiagnosis && !$0.excluded }.compactMap(\.tScore).min()
        let lowestZ = rois.filter { $0.forDiagnosis && !$0.excluded }.compactMap(\.zScore).min()
        warnings += SpineAnalysis.zReferenceWarnings(reference, rois: rois)
        let interpretation = patient.map { SpineAnalysis.interpretSite(diagnosticT: lowest, diagnosticZ: lowestZ, patient: $0, reference: reference) }
        return SiteResult(site: "\(m.side)_hip", rois: rois, warnings: warnings, interpretation: interpretation,
                          reference: reference.label, analysisVersion: AnalysisVersion.current, spine: nil, hip: m)
    }
}

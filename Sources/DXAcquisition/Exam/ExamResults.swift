import DXAnalysis
import DXClinical
import Foundation

/// An exam's clinical answer, from what it stored: each site's latest completed scan with its
/// analysis (or why there is none), the diagnosis on the lowest T-score of the sites ISCD
/// names, and the dose. `exam.results`, `dexa exam report` and the report page all read this.
public struct ExamResults: Sendable, Codable, Equatable {
    public struct Patient: Sendable, Codable, Equatable {
        public var id: String
        public var name: String
        public var sex: String
        public var birthDate: String
        /// At the exam.
        public var ageYears: Double?

        public enum CodingKeys: String, CodingKey {
            case id, name, sex
            case birthDate = "birth_date", ageYears = "age_years"
        }

        public init(id: String, name: String, sex: String, birthDate: String, ageYears: Double?) {
            self.id = id; self.name = name; self.sex = sex; self.birthDate = birthDate; self.ageYears = ageYears
        }
    }

    /// One site: the attempt the result comes from.
    public struct Site: Sendable, Codable, Equatable {
        public var site: String
        public var title: String
        public var attempt: Int?
        /// `completed`, or the last attempt's status when none completed, or `not_scanned`.
        public var status: String
        public var capture: String?
        public var result: SiteResult?
        /// Why there is no result.
        public var note: String?
        public var dose: ScanDose?
        /// The technologist's ROI corrections of this attempt, oldest first (`exam.correct`).
        public var corrections: [CorrectionRecord] = []
        /// The unit that made the scan ("DX-1 DX1-000123"), as the attempt recorded it.
        public var device: String?

        public init(site: String, title: String, attempt: Int?, status: String, capture: String?, result: SiteResult?, note: String?, dose: ScanDose?) {
            self.site = site; self.title = title; self.attempt = attempt; self.status = status; self.capture = capture; self.result = result
            self.note = note; self.dose = dose
        }
    }

    /// The diagnosis: the lowest T-score among L1–L4, total hip and femoral neck (either hip).
    public struct Diagnosis: Sendable, Codable, Equatable {
        /// Whom the classification applies to.
        public var basis: String
        public var site: String?
        public var roi: String?
        public var tScore: Double?
        public var whoClass: WHOClass?
        public var words: String
        public var note: String?
        /// Under 50: the lowest Z-score of the same sites and what it says.
        public var zScore: Double?
        public var zInterpretation: ZInterpretation?

        public enum CodingKeys: String, CodingKey {
            case basis, site, roi, words, note
            case tScore = "t_score", whoClass = "who_class", zScore = "z_score", zInterpretation = "z_interpretation"
        }

        public init(basis: String, site: String? = nil, roi: String? = nil, tScore: Double? = nil, whoClass: WHOClass? = nil, words: String,
                    note: String? = nil, zScore: Double? = nil, zInterpretation: ZInterpretation? = nil) {
            self.basis = basis; self.site = site; self.roi = roi; self.tScore = tScore; self.whoClass = whoClass; self.words = words; self.note = note
            self.zScore = zScore; self.zInterpretation = zInterpretation
        }
    }

    public var examID: Int64
    public var state: ExamState
    public var patient: Patient
    public var examDate: String
    public var sites: [Site]
    public var diagnosis: Diagnosis
    public var dose: ScanDose
    public var reference: String
    public var analysisVersion: String
    /// The comparison with the patient's latest earlier exam; nil when there is none.
    public var followUp: FollowUp?
    /// The exam started without a passing phantom QC that day, or under a service override of
    /// the QC lockout: each in words, on every report made from it (docs/qc.md).
    public var qualityControl: [String] = []
    /// Whether VFA is indicated (ISCD 2019) by the lowest T-score and the checklist's answers;
    /// nil when the patient's sex and age are not known. The protocol scans the lateral spine
    /// either way.
    public var vfaIndication: VFAIndication?
    /// When the exam was created and started (ISO 8601, UTC): the exam's identity for all
    /// time (its number alone restarts with a new database) and the study's time in DICOM.
    public var createdAt: String?
    public var startedAt: String?
    /// The worklist's order the exam fulfils; nil for an exam typed in.
    public var scheduled: ScheduledProcedure?
    /// When the exam ended (ISO 8601, UTC), who ran it, and why it was aborted when it was:
    /// the performed procedure step's end, operator and discontinuation reason.
    public var endedAt: String?
    public var operatorName: String?
    public var abortReason: String?
    /// The technologist's choice of why (nil: not aborted, or results from before it was kept).
    public var abortCause: AbortCause?
    /// Every attempt that exposed the patient, in order, rejected and aborted ones included:
    /// the irradiation events of the dose report. Empty in results published before it was
    /// kept (the sites' doses then stand for them).
    public var exposures: [Exposure] = []

    /// One attempt's exposure: its scans (references, scout and scan) as one irradiation event.
    public struct Exposure: Sendable, Codable, Equatable {
        public var site: String
        public var attempt: Int
        public var status: String
        public var startedAt: String?
        public var endedAt: String?
        public var dose: ScanDose
        public var tubeCurrentUA: UInt32?

        public enum CodingKeys: String, CodingKey {
            case site, attempt, status, dose
            case startedAt = "started_at", endedAt = "ended_at", tubeCurrentUA = "tube_current_ua"
        }

        public init(site: String, attempt: Int, status: String, startedAt: String?, endedAt: String?, dose: ScanDose, tubeCurrentUA: UInt32? = nil) {
            self.site = site; self.attempt = attempt; self.status = status; self.startedAt = startedAt; self.endedAt = endedAt; self.dose = dose
            self.tubeCurrentUA = tubeCurrentUA
        }
    }

    public enum CodingKeys: String, CodingKey {
        case state, patient, sites, diagnosis, dose, reference, exposures
        case examID = "exam_id", examDate = "exam_date", analysisVersion = "analysis_version", followUp = "follow_up"
        case qualityControl = "quality_control", vfaIndication = "vfa_indication"
        case createdAt = "created_at", startedAt = "started_at", scheduled
        case endedAt = "ended_at", operatorName = "operator", abortReason = "abort_reason", abortCause = "abort_cause"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        examID = try c.decode(Int64.self, forKey: .examID)
        state = try c.decode(ExamState.self, forKey: .state)
        patient = try c.decode(Patient.self, forKey: .patient)
        examDate = try c.decode(String.self, forKey: .examDate)
        sites = try c.decode([Site].self, forKey: .sites)
        diagnosis = try c.decode(Diagnosis.self, forKey: .diagnosis)
        dose = try c.decode(ScanDose.self, forKey: .dose)
        reference = try c.decode(String.self, forKey: .reference)
        analysisVersion = try c.decode(String.self, forKey: .analysisVersion)
        followUp = try c.decodeIfPresent(FollowUp.self, forKey: .followUp)
        qualityControl = try c.decodeIfPresent([String].self, forKey: .qualityControl) ?? []
        vfaIndication = try c.decodeIfPresent(VFAIndication.self, forKey: .vfaIndication)
        createdAt = try c.decodeIfPresent(String.self, forKey: .createdAt)
        startedAt = try c.decodeIfPresent(String.self, forKey: .startedAt)
        scheduled = try c.decodeIfPresent(ScheduledProcedure.self, forKey: .scheduled)
        endedAt = try c.decodeIfPresent(String.self, forKey: .endedAt)
        operatorName = try c.decodeIfPresent(String.self, forKey: .operatorName)
        abortReason = try c.decodeIfPresent(String.self, forKey: .abortReason)
        // A cause a later version added reads as "other": the results stay readable.
        abortCause = try c.decodeIfPresent(String.self, forKey: .abortCause).map { AbortCause(rawValue: $0) ?? .other }
        exposures = try c.decodeIfPresent([Exposure].self, forKey: .exposures) ?? []
    }

    public init(examID: Int64, state: ExamState, patient: Patient, examDate: String, sites: [Site], diagnosis: Diagnosis, dose: ScanDose,
                reference: String, analysisVersion: String) {
        self.examID = examID; self.state = state; self.patient = patient; self.examDate = examDate; self.sites = sites
        self.diagnosis = diagnosis; self.dose = dose; self.reference = reference; self.analysisVersion = analysisVersion
    }

    public init(_ exam: ExamRecord, reference: ReferenceSet = .nhanes) {
        examID = exam.id
        state = exam.state
        createdAt = exam.createdAt
        startedAt = exam.startedAt
        scheduled = exam.scheduled
        endedAt = exam.endedAt
        operatorName = exam.operatorName
        abortReason = exam.state == .aborted
            ? exam.warnings.last { $0.kind == .aborted && $0.message.hasPrefix("exam aborted: ") }.map { String($0.message.dropFirst("exam aborted: ".count)) }
            : nil
        abortCause = exam.state == .aborted ? exam.abortCause : nil
        exposures = exam.attempts.compactMap { a in
            guard let d = a.dose, d.scans > 0 else { return nil }
            return Exposure(site: a.site.rawValue, attempt: a.attempt, status: a.status.rawValue, startedAt: a.startedAt, endedAt: a.endedAt,
                            dose: d, tubeCurrentUA: a.exposure?.tubeCurrentUA)
        }
        let day = ISO8601DateFormatter().date(from: exam.startedAt ?? exam.createdAt) ?? Date()
        let context = PatientContext(sex: exam.patient.sex.rawValue, birthDate: exam.patient.birthDate, on: day)
        patient = Patient(id: exam.patient.id, name: exam.patient.name, sex: exam.patient.sex.rawValue, birthDate: exam.patient.birthDate,
                          ageYears: context.map { ($0.ageYears * 10).rounded(.down) / 10 })
        examDate = String((exam.startedAt ?? exam.createdAt).prefix(10))
        sites = DXAcquisition.Site.allCases.filter { site in exam.plan.contains(site) || exam.attempts.contains { $0.site == site } }.map { site in
            let attempts = exam.attempts.filter { $0.site == site }
            guard let a = attempts.last(where: { $0.status == .completed }) ?? attempts.last else {
                return Site(site: site.rawValue, title: site.title, attempt: nil, status: "not_scanned", capture: nil, result: nil,
                            note: "not scanned", dose: nil)
            }
            let note = a.status == .completed ? a.analysisNote : "\(a.status.rawValue)\(a.reason.map { ": \($0)" } ?? "")"
            var s = Site(site: site.rawValue, title: site.title, attempt: a.attempt, status: a.status.rawValue, capture: a.capture,
                         result: a.status == .completed ? a.analysis : nil, note: note, dose: a.dose)
            s.device = a.device
            return s
        }
        dose = exam.dose
        self.reference = reference.label
        analysisVersion = AnalysisVersion.current
        diagnosis = Self.diagnose(sites, patient: context, reference: reference)
        qualityControl = exam.warnings.filter { $0.kind == .qc }.map(\.message)
        if let context, let sex = Applicability.Sex(rawValue: exam.patient.sex.rawValue) {
            let q = exam.checklist.vfaQuestions
            vfaIndication = VFAIndication.evaluate(tScore: diagnosis.tScore, .init(
                sex: sex, ageYears: context.ageYears, heightLossCm: q?.heightLossCm, undocumentedVertebralFracture: q?.undocumentedVertebralFracture,
                glucocorticoidMgPerDay: q?.glucocorticoidMgPerDay, glucocorticoidMonths: q?.glucocorticoidMonths))
        }
    }

    /// Under 50 (ISCD): the lowest Z-score of L1–L4, total hip and femoral neck; Z ≤ −2.0 is
    /// "below the expected range for age". No Z-score, no reading, and the words say why.
    static func diagnoseOnZ(_ sites: [Site], basis: String, reference: ReferenceSet) -> Diagnosis {
        var lowest: (site: String, roi: String, z: Double)?
        for s in sites {
            guard let r = s.result else { continue }
            for roi in r.rois where !roi.excluded && roi.forDiagnosis && ReferenceSite(rawValue: roi.name) != nil {
                if let z = roi.zScore, z < lowest?.z ?? .infinity { lowest = (s.site, roi.name, z) }
            }
        }
        guard let lowest else {
            return Diagnosis(basis: basis, words: reference.ageMatched != nil
                                ? "no classification: Z-scores apply, and no site has one (no BMD, or the Z-score reference has no band for this age and sex)"
                                : "no WHO classification: Z-scores apply, and no age- and sex-matched reference is installed",
                             note: "docs/clinical-references.md")
        }
        let reading = ZInterpretation(zScore: lowest.z)
        let words = reading == .belowExpectedRange ? "below the expected range for age" : "within the expected range for age"
        return Diagnosis(basis: basis, site: lowest.site, roi: lowest.roi, words: words,
                         note: "osteoporosis is not diagnosed on BMD alone in this group (ISCD)",
                         zScore: lowest.z, zInterpretation: reading)
    }

    /// The diagnosis over the sites' results (ISCD: the lowest of L1–L4, total hip and neck).
    public static func diagnose(_ sites: [Site], patient: PatientContext?, reference: ReferenceSet = .nhanes) -> Diagnosis {
        guard let patient else {
            return Diagnosis(basis: "unknown", words: "no classification: the patient's sex or birth date is unreadable")
        }
        let applicability = Applicability(sex: patient.sex, ageYears: patient.ageYears)
        guard case .who(let basis) = applicability else {
            if case .zScoreOnly(let basis) = applicability { return diagnoseOnZ(sites, basis: basis, reference: reference) }
            return Diagnosis(basis: "unknown", words: "no classification")
        }
        // ISCD: L1–L4 (the vertebrae used), total hip and femoral neck, either hip.
        var scores: [(site: String, score: SiteScore)] = []
        for s in sites {
            guard let r = s.result else { continue }
            for roi in r.rois where !roi.excluded && roi.forDiagnosis {
                guard let ref = ReferenceSite(rawValue: roi.name), let bmd = roi.bmdGCm2, let t = roi.tScore else { continue }
                scores.append((s.site, SiteScore(site: ref, bmdGCm2: bmd, tScore: t)))
            }
        }
        guard let lowest = diagnosticSite(scores.map(\.score)), let from = scores.first(where: { $0.score == lowest }) else {
            return Diagnosis(basis: basis, words: "no classification: no site has a T-score")
        }
        let who = WHOClass(tScore: lowest.tScore)
        // The sites the diagnosis could have used (the lateral spine is not one).
        let missing = sites.filter { $0.result == nil && $0.site != DXAcquisition.Site.lateralSpine.rawValue }.map(\.title)
        var notes: [String] = []
        if !missing.isEmpty { notes.append("without \(missing.joined(separator: ", ")) (no result)") }
        // Labels the two cues disagree on: the spine's numbers may belong to other vertebrae.
        if sites.contains(where: { $0.result?.warnings.contains { $0.code == "labels_disagree" } == true }) {
            notes.append("the vertebral labels need checking (the iliac crests and the ribs disagree)")
        }
        return Diagnosis(basis: basis, site: from.site, roi: lowest.site.rawValue, tScore: reportedScore(lowest.tScore), whoClass: who,
                         words: who.words, note: notes.isEmpty ? nil : notes.joined(separator: "; "))
    }
}

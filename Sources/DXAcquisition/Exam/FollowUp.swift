import DXAnalysis
import DXClinical
import Foundation

/// The ROIs a follow-up and a precision study look at: the ones ISCD diagnoses and monitors on
/// (L1–L4 with the same vertebrae, the total hip, the femoral neck). Trochanter,
/// intertrochanter and Ward's are not monitored.
public enum MonitoredROI {
    public static let names = ["L1-L4", "total_hip", "neck"]

    /// ISCD's minimum acceptable precision for a technologist, as a coefficient of variation
    /// (ISCD 2019 adult official positions; Baim et al., J Clin Densitom 2005;8:371–378): worse
    /// than this, the technologist should be retrained. docs/clinical-references.md.
    public static func minimumAcceptableCVPercent(_ roi: String) -> Double? {
        switch roi {
        case "L1-L4": 1.9
        case "total_hip": 1.8
        case "neck": 2.5
        default: nil
        }
    }
}

/// A stored precision study for one ROI on one device (`dexa precision`): what a follow-up's
/// least significant change comes from.
public struct PrecisionRecord: Sendable, Codable, Equatable {
    public var device: String
    public var roi: String
    /// Patients (for a hip: patient and side) with at least two scans, and the degrees of freedom.
    public var patients: Int
    public var degreesOfFreedom: Int
    /// RMS-SD (g/cm²) and RMS-CV (%) over the patients; LSC = 2.77 × each.
    public var rmsSDGCm2: Double
    public var rmsCVPercent: Double
    public var lscGCm2: Double
    public var lscPercent: Double
    /// 27 degrees of freedom or more (15 patients × 3 scans, 30 × 2).
    public var meetsISCD: Bool
    /// Within ISCD's minimum acceptable precision for the ROI.
    public var acceptable: Bool
    public var exams: [Int64]
    public var createdAt: String?
    public var createdBy: String?

    public enum CodingKeys: String, CodingKey {
        case device, roi, patients, exams, acceptable
        case degreesOfFreedom = "degrees_of_freedom", rmsSDGCm2 = "rms_sd_g_cm2", rmsCVPercent = "rms_cv_percent", lscGCm2 = "lsc_g_cm2"
        case lscPercent = "lsc_percent", meetsISCD = "meets_iscd", createdAt = "created_at", createdBy = "created_by"
    }

    public init(device: String, roi: String, patients: Int, degreesOfFreedom: Int, rmsSDGCm2: Double, rmsCVPercent: Double, lscGCm2: Double,
                lscPercent: Double, meetsISCD: Bool, acceptable: Bool, exams: [Int64], createdAt: String? = nil, createdBy: String? = nil) {
        self.device = device; self.roi = roi; self.patients = patients; self.degreesOfFreedom = degreesOfFreedom; self.rmsSDGCm2 = rmsSDGCm2
        self.rmsCVPercent = rmsCVPercent; self.lscGCm2 = lscGCm2; self.lscPercent = lscPercent; self.meetsISCD = meetsISCD
        self.acceptable = acceptable; self.exams = exams; self.createdAt = createdAt; self.createdBy = createdBy
    }
}

/// A precision study over repeated exams (ISCD: each patient scanned two or three times,
/// repositioned in between, on one device): per monitored ROI, each patient's BMDs from the
/// latest completed scan of each exam, the RMS-SD, RMS-CV and the LSC.
public struct PrecisionStudy: Sendable, Equatable {
    public var device: String
    public var records: [PrecisionRecord]
    /// What was left out and why (an exam without the site, an excluded ROI, a lone scan).
    public var notes: [String]

    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        case tooFewExams
        case duplicateExam(Int64)
        case devices([String])
        case noDevice(Int64)
        case nothingRepeated

        public var description: String {
            switch self {
            case .tooFewExams: "a precision study needs at least two exams of the same patient"
            case .duplicateExam(let id): "exam \(id) is listed twice"
            case .devices(let d): "the exams were made on different devices (\(d.joined(separator: ", "))): a precision study is per device"
            case .noDevice(let id): "exam \(id) does not record its device: it cannot be part of a precision study"
            case .nothingRepeated: "no patient has two analysed scans of the same ROI among these exams"
            }
        }
    }

    public init(exams: [ExamRecord]) throws(Failure) {
        guard exams.count >= 2 else { throw .tooFewExams }
        var seen = Set<Int64>()
        for e in exams where !seen.insert(e.id).inserted { throw .duplicateExam(e.id) }
        // The device of each exam: that of its analysed scans.
        var devices = Set<String>()
        for e in exams {
            let used = e.attempts.filter { $0.status == .completed && $0.analysis != nil }
            for a in used {
                guard let d = a.device else { throw .noDevice(e.id) }
                devices.insert(d)
            }
        }
        guard devices.count <= 1 else { throw .devices(devices.sorted()) }
        guard let device = devices.first else { throw .nothingRepeated }
        self.device = device
        var notes: [String] = []
        // (patient, site) → ROI → BMDs in exam order. A hip's precision pools the patients' sides
        // as separate groups (ISCD's calculator takes any hip; both hips of one patient count twice).
        var groups: [String: [String: [Double]]] = [:]
        var order: [String] = []
        for e in exams.sorted(by: { $0.id < $1.id }) {
            for site in Site.allCases where site != .lateralSpine {
                guard let a = e.attempts.last(where: { $0.site == site && $0.status == .completed }) else { continue }
                guard let result = a.analysis else {
                    notes.append("exam \(e.id) \(site.title): no analysis (\(a.analysisNote ?? "none"))")
                    continue
                }
                let key = "\(e.patient.id) \(site.rawValue)"
                if groups[key] == nil { order.append(key) }
                for name in MonitoredROI.names {
                    guard let roi = result.rois.first(where: { $0.name == name }) else { continue }
                    guard !roi.excluded, let bmd = roi.bmdGCm2 else {
                        notes.append("exam \(e.id) \(site.title) \(name): excluded (\(roi.reason ?? "no BMD"))")
                        continue
                    }
                    groups[key, default: [:]][name, default: []].append(bmd)
                }
            }
        }
        var records: [PrecisionRecord] = []
        for name in MonitoredROI.names {
            let scans = order.compactMap { groups[$0]?[name] }
            for key in order where (groups[key]?[name]?.count ?? 0) == 1 { notes.append("\(key) \(name): one scan only, left out") }
            guard let p = Precision(scans: scans) else { continue }
            // RMS-CV: each patient's SD over their mean, as a percentage, averaged in squares.
            let usable = scans.filter { $0.count >= 2 }
            let cvs = usable.map { s -> Double in
                let mean = s.reduce(0, +) / Double(s.count)
                let variance = s.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(s.count - 1)
                return variance.squareRoot() / mean * 100
            }
            let rmsCV = (cvs.reduce(0) { $0 + $1 * $1 } / Double(cvs.count)).squareRoot()
            let limit = MonitoredROI.minimumAcceptableCVPercent(name) ?? .infinity
            records.append(PrecisionRecord(device: device, roi: name, patients: p.patients, degreesOfFreedom: p.degreesOfFreedom,
                                           rmsSDGCm2: p.rmsSDGCm2, rmsCVPercent: rmsCV, lscGCm2: p.lscGCm2, lscPercent: Precision.lscFactor * rmsCV,
                                           meetsISCD: p.isEnoughForISCD, acceptable: rmsCV <= limit, exams: exams.map(\.id).sorted(),
                                           createdAt: nil, createdBy: nil))
        }
        guard !records.isEmpty else { throw .nothingRepeated }
        self.records = records
        self.notes = notes
    }
}

/// A follow-up against the patient's prior exam (ISCD): per monitored ROI the change in g/cm²
/// and %, significant when it equals or exceeds the LSC of this device's precision study; a
/// bone area changed by more than 2 % is flagged (positioning or ROI placement differ). Only
/// scans of the same device are compared, and L1–L4 only over the same vertebrae.
public struct FollowUp: Sendable, Codable, Equatable {
    public struct Prior: Sendable, Codable, Equatable {
        public var examID: Int64
        public var examDate: String
        public enum CodingKeys: String, CodingKey { case examID = "exam_id", examDate = "exam_date" }
        public init(examID: Int64, examDate: String) { self.examID = examID; self.examDate = examDate }
    }

    public struct ROIChange: Sendable, Codable, Equatable {
        public var site: String
        public var roi: String
        public var priorBMDGCm2: Double
        public var bmdGCm2: Double
        public var changeGCm2: Double
        public var changePercent: Double
        /// From this device's precision study; nil when there is none (significance not judged).
        public var lscGCm2: Double?
        public var significant: Bool?
        public var areaChangePercent: Double
        /// Over 2 %: the ROIs do not cover the same bone, and the change may not be the bone's.
        public var areaFlag: Bool
        public var notes: [String]

        public enum CodingKeys: String, CodingKey {
            case site, roi, significant, notes
            case priorBMDGCm2 = "prior_bmd_g_cm2", bmdGCm2 = "bmd_g_cm2", changeGCm2 = "change_g_cm2", changePercent = "change_percent"
            case lscGCm2 = "lsc_g_cm2", areaChangePercent = "area_change_percent", areaFlag = "area_flag"
        }

        public init(site: String, roi: String, priorBMDGCm2: Double, bmdGCm2: Double, changeGCm2: Double, changePercent: Double, lscGCm2: Double?,
                    significant: Bool?, areaChangePercent: Double, areaFlag: Bool, notes: [String]) {
            self.site = site; self.roi = roi; self.priorBMDGCm2 = priorBMDGCm2; self.bmdGCm2 = bmdGCm2; self.changeGCm2 = changeGCm2
            self.changePercent = changePercent; self.lscGCm2 = lscGCm2; self.significant = significant; self.areaChangePercent = areaChangePercent
            self.areaFlag = areaFlag; self.notes = notes
        }
    }

    public var prior: Prior
    public var changes: [ROIChange]
    /// Sites or ROIs that are not compared, and why.
    public var notes: [String]

    public init(prior: Prior, changes: [ROIChange], notes: [String]) { self.prior = prior; self.changes = changes; self.notes = notes }

    /// Bone area changed by more than this (%) is flagged (ISCD: compare like with like; the
    /// 2 % is this product's threshold, docs/clinical-references.md).
    public static let areaLimitPercent = 2.0

    /// - Parameters:
    ///   - sites: this exam's sites (ExamResults), with `device` of each site's attempt.
    ///   - prior: the prior exam.
    ///   - precision: this device's stored precision, by ROI.
    public static func compare(_ current: ExamRecord, prior: ExamRecord, precision: [PrecisionRecord]) -> FollowUp {
        var changes: [ROIChange] = []
        var notes: [String] = []
        for site in Site.allCases where site != .lateralSpine {
            guard let now = current.attempts.last(where: { $0.site == site && $0.status == .completed }), let result = now.analysis else { continue }
            guard let then = prior.attempts.last(where: { $0.site == site && $0.status == .completed }), let before = then.analysis else {
                notes.append("\(site.title): not in the prior exam")
                continue
            }
            guard let device = now.device, let priorDevice = then.device else {
                notes.append("\(site.title): the device of one of the scans is not recorded: no change given")
                continue
            }
            guard device == priorDevice else {
                notes.append("\(site.title): the prior scan was made on \(priorDevice), this one on \(device); BMD from different devices is not compared without a cross-calibration: no change given")
                continue
            }
            for name in MonitoredROI.names {
                guard let a = result.rois.first(where: { $0.name == name }), let b = before.rois.first(where: { $0.name == name }) else { continue }
                guard !a.excluded, !b.excluded, let bmd = a.bmdGCm2, let priorBMD = b.bmdGCm2, priorBMD > 0, b.areaCm2 > 0 else {
                    let which = (a.excluded || a.bmdGCm2 == nil) ? "this exam" : "the prior exam"
                    notes.append("\(site.title) \(name): excluded or not measured in \(which): no change given")
                    continue
                }
                if a.vertebraeUsed != b.vertebraeUsed {
                    let used = { (r: ClinicalROI) in r.vertebraeUsed?.joined(separator: ", ") ?? "?" }
                    notes.append("\(site.title) \(name): the vertebrae used differ (prior \(used(b)), now \(used(a))): no change given; compare the same vertebrae")
                    continue
                }
                let lsc = precision.first { $0.roi == name && $0.device == device }
                var roiNotes: [String] = []
                if lsc == nil { roiNotes.append("no precision study for \(name) on this device (dexa precision): significance not judged") }
                if let p = lsc, !p.meetsISCD { roiNotes.append("the LSC comes from a precision study of \(p.degreesOfFreedom) degree\(p.degreesOfFreedom == 1 ? "" : "s") of freedom (ISCD asks for 27)") }
                // The two scans exposed differently (another mode, or another current in the same
                // mode): under much soft tissue the result depends on the photons (30 patients of
                // 34 g/cm² read L1–L4 +6.1 % at 2.5 times the current, +1.6 % at 5–7.5 times;
                // docs/physics.md), so part of a change may be the exposure's.
                if let e = now.exposure, let f = then.exposure, e.mode != f.mode || e.tubeCurrentUA != f.tubeCurrentUA {
                    roiNotes.append("the prior scan was exposed in the \(f.mode) mode at \(f.tubeCurrentUA) µA, this one in the \(e.mode) mode at \(e.tubeCurrentUA) µA: under much soft tissue the BMD depends on the exposure, so part of the change may be the exposure's")
                }
                let change = Change(priorGCm2: priorBMD, currentGCm2: bmd, lscGCm2: lsc?.lscGCm2 ?? .nan)
                let area = (a.areaCm2 / b.areaCm2 - 1) * 100
                let flagged = abs(area) > areaLimitPercent
                if flagged {
                    roiNotes.append(String(format: "the bone area changed by %+.1f %%: check positioning and the ROIs before reading the change", area))
                }
                changes.append(ROIChange(site: site.rawValue, roi: name, priorBMDGCm2: priorBMD, bmdGCm2: bmd, changeGCm2: bmd - priorBMD,
                                         changePercent: (bmd / priorBMD - 1) * 100, lscGCm2: lsc?.lscGCm2, significant: change?.significant,
                                         areaChangePercent: area, areaFlag: flagged, notes: roiNotes))
            }
        }
        let date = String((prior.startedAt ?? prior.createdAt).prefix(10))
        return FollowUp(prior: Prior(examID: prior.id, examDate: date), changes: changes, notes: notes)
    }
}

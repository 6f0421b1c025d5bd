import DXAnalysis
import DXProtocol
import DXDecomposition
import Foundation

/// A site of the standard exam (ICD §7's patient regions).
public typealias Site = CaptureScan.Region

extension CaptureScan.Region {
    /// The standard exam's order: AP lumbar spine, left hip, right hip, lateral spine (VFA).
    public static let standardOrder: [Site] = [.apSpine, .leftHip, .rightHip, .lateralSpine]

    public var title: String {
        switch self {
        case .apSpine: "AP lumbar spine"
        case .leftHip: "left hip"
        case .rightHip: "right hip"
        case .lateralSpine: "lateral spine (VFA)"
        }
    }

    /// The other hip, for a swap.
    public var otherHip: Site? {
        switch self {
        case .leftHip: .rightHip
        case .rightHip: .leftHip
        default: nil
        }
    }
}

/// Who is measured. `ethnicity` chooses the reference population for T- and Z-scores.
public struct PatientRecord: Sendable, Codable, Equatable {
    public enum Sex: String, Sendable, Codable, CaseIterable { case female, male }
    public var id: String
    public var name: String
    public var sex: Sex
    /// ISO 8601 date, YYYY-MM-DD.
    public var birthDate: String
    public var ethnicity: String?

    public enum CodingKeys: String, CodingKey {
        case id, name, sex, ethnicity
        case birthDate = "birth_date"
    }

    public init(id: String, name: String, sex: Sex, birthDate: String, ethnicity: String? = nil) {
        self.id = id; self.name = name; self.sex = sex; self.birthDate = birthDate; self.ethnicity = ethnicity
    }

    /// What is wrong with the record, if anything (one line for the technologist).
    public var problem: String? {
        if id.trimmingCharacters(in: .whitespaces).isEmpty { return "the patient needs an id" }
        if name.trimmingCharacters(in: .whitespaces).isEmpty { return "the patient needs a name" }
        // What DICOM can carry, so that every object of the exam is valid (PS3.5 §6.2: Patient
        // ID is LO, 64 characters; a name component group at most 64; a backslash separates
        // values and control characters are not text).
        func unfit(_ s: String) -> Bool { s.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F || $0 == "\\" } }
        if id.count > 64 || unfit(id) { return "the patient id must be at most 64 characters without a backslash or control characters" }
        if name.count > 64 || unfit(name) { return "the patient's name must be at most 64 characters without a backslash or control characters" }
        guard let birth = CalendarDay(birthDate) else { return "birth_date must be a date, YYYY-MM-DD" }
        if birth.year < 1900 { return "birth_date \(birthDate) is before 1900" }
        return nil
    }
}

/// A calendar date without a time (the checklist's dates: birth, contrast, nuclear studies).
public struct CalendarDay: Sendable, Codable, Hashable, Comparable, CustomStringConvertible {
    public var year: Int, month: Int, day: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "-")
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]) else { return nil }
        var c = DateComponents()
        c.year = y; c.month = m; c.day = d
        guard let date = Self.calendar.date(from: c), Self.calendar.component(.day, from: date) == d, (1...12).contains(m) else { return nil }
        year = y; month = m; day = d
    }

    public init(_ date: Date) {
        let c = Self.calendar.dateComponents([.year, .month, .day], from: date)
        year = c.year ?? 1970; month = c.month ?? 1; day = c.day ?? 1
    }

    static var calendar: Calendar {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC") ?? .current
        return c
    }

    var date: Date { Self.calendar.date(from: DateComponents(year: year, month: month, day: day)) ?? Date(timeIntervalSince1970: 0) }

    public func adding(days: Int) -> CalendarDay { CalendarDay(Self.calendar.date(byAdding: .day, value: days, to: date) ?? date) }
    public func days(until other: CalendarDay) -> Int { Self.calendar.dateComponents([.day], from: date, to: other.date).day ?? 0 }

    public var description: String { String(format: "%04d-%02d-%02d", year, month, day) }
    public static func < (a: CalendarDay, b: CalendarDay) -> Bool { (a.year, a.month, a.day) < (b.year, b.month, b.day) }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let d = CalendarDay(text) else { throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a date (YYYY-MM-DD): \(text)")) }
        self = d
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// Why the technologist ended an exam before its plan was done: chosen at the abort, so the
/// RIS hears it as a coded reason (DICOM PS3.16 CID 9301, docs/dicom-conformance.md) and not
/// as words to be guessed at.
public enum AbortCause: String, Sendable, Codable, CaseIterable {
    /// The scanner failed or could not be used (a fault, an interlock, no calibration).
    case equipmentFailure = "equipment_failure"
    /// The patient did not want to go on.
    case patientRefused = "patient_refused"
    /// The patient's condition prevented going on (pain, could not lie still or flat).
    case patientCondition = "patient_condition"
    /// The exam was started for the wrong patient or the wrong order.
    case wrongWorklistEntry = "wrong_worklist_entry"
    /// Anything else (the reason's words say what).
    case other

    /// A technologist's answer at the console: the cause's number in `allCases` (from 1) or
    /// its name, spaces or hyphens for underscores, any case; nil for anything else.
    public init?(answer: String) {
        let a = answer.trimmingCharacters(in: .whitespaces).lowercased()
        if let n = Int(a) {
            guard Self.allCases.indices.contains(n - 1) else { return nil }
            self = Self.allCases[n - 1]
            return
        }
        let name = a.replacingOccurrences(of: " ", with: "_").replacingOccurrences(of: "-", with: "_")
        guard let c = Self(rawValue: name) else { return nil }
        self = c
    }

    /// A wrong cause is refused naming the ones there are.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let name = try c.decode(String.self)
        guard let cause = Self(rawValue: name) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(name)' is not a cause: one of \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = cause
    }
}

/// Where an exam stands.
public enum ExamState: String, Sendable, Codable {
    /// Created; the checklist is not complete.
    case created
    /// The checklist blocks the exam (pregnancy, a recent contrast study, over the weight limit).
    case blocked
    /// The checklist is complete: the exam may start.
    case ready
    case inProgress = "in_progress"
    case completed
    case aborted
}

/// One attempt at one site: what was scanned, how it ended, what the quick look showed and
/// what the timing and stillness checks found.
public struct SiteAttempt: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable {
        case running, completed, aborted, interrupted, skipped
        /// Put back into the plan after a skip (`exam.add`): to be scanned.
        case pending
        /// Stopped because the patient moved more than the limit: reposition and rescan.
        case motion
    }
    public var site: Site
    public var attempt: Int
    public var status: Status
    public var reason: String?
    public var capture: String?
    public var scanID: UInt32?
    public var plannedLines: Int
    public var lines: Int
    public var startedAt: String?
    public var endedAt: String?
    public var quickLook: QuickLook?
    public var warnings: [ExamWarning]
    public var motion: [MotionRecord]
    /// The X-ray dose of every scan of the attempt (references and scout included).
    public var dose: ScanDose?
    /// The exposure mode the scout chose, and the current the scan took.
    public var exposure: SiteExposure?
    /// The site's decomposed scan with its geometry (`DecomposedScan`, a `.dxdec` file beside
    /// the capture), written when the scan completed: what the site's analysis works on.
    public var decomposed: String?
    /// The site's analysis, made when the scan completed: ROIs, scores, findings.
    public var analysis: SiteResult?
    /// Why a completed scan has no analysis (the spine not found, a site not analysed by this
    /// version), in words for the technologist.
    public var analysisNote: String?
    /// The unit that made the scan ("DX-1 DX1-000123": model and serial from GET_INFO): a
    /// follow-up and a precision study compare scans of one device only.
    public var device: String?

    public enum CodingKeys: String, CodingKey {
        case site, attempt, status, reason, capture, lines, warnings, motion, dose, exposure, decomposed, analysis, device
        case analysisNote = "analysis_note"
        case scanID = "scan_id", plannedLines = "planned_lines", startedAt = "started_at", endedAt = "ended_at", quickLook = "quick_look"
    }

    public init(site: Site, attempt: Int, status: Status, reason: String? = nil, capture: String? = nil, scanID: UInt32? = nil,
                plannedLines: Int = 0, lines: Int = 0, startedAt: String? = nil, endedAt: String? = nil, quickLook: QuickLook? = nil,
                warnings: [ExamWarning] = [], motion: [MotionRecord] = [], dose: ScanDose? = nil) {
        self.site = site; self.attempt = attempt; self.status = status; self.reason = reason; self.capture = capture
        self.scanID = scanID; self.plannedLines = plannedLines; self.lines = lines; self.startedAt = startedAt; self.endedAt = endedAt
        self.quickLook = quickLook; self.warnings = warnings; self.motion = motion; self.dose = dose
    }
}

/// How a site was exposed: the mode the scout chose (thin, standard, thick), why, the tube
/// current the scan took and the scout's own capture.
public struct SiteExposure: Sendable, Codable, Equatable {
    public var mode: ExposureMode
    public var tubeCurrentUA: UInt32
    public var reason: String
    public var predictedDensestCounts: Double?
    public var predictedBrightestCounts: Double?
    /// The densest tenth's predicted bone noise in the standard mode (g/cm², a pixel's SD), where
    /// the calibration says the noise per photon (`ExposureModeChooser.BoneNoise`).
    public var predictedDensestBoneSD: Double?
    public var scoutCapture: String?

    public enum CodingKeys: String, CodingKey {
        case mode, reason
        case tubeCurrentUA = "tube_current_ua", predictedDensestCounts = "predicted_densest_counts"
        case predictedBrightestCounts = "predicted_brightest_counts", scoutCapture = "scout_capture"
        case predictedDensestBoneSD = "predicted_densest_bone_sd_g_cm2"
    }

    public init(_ choice: ExposureModeChooser.Choice, tubeCurrentUA: UInt32, scoutCapture: String?) {
        mode = choice.mode; reason = choice.reason; self.tubeCurrentUA = tubeCurrentUA
        predictedDensestCounts = choice.predictedDensestCounts; predictedBrightestCounts = choice.predictedBrightestCounts
        predictedDensestBoneSD = choice.predictedDensestBoneSD
        self.scoutCapture = scoutCapture
    }
}

/// The look a technologist takes before the next scan: the bone found, its area and mean
/// bone mineral (site ROIs and T-scores come later).
public struct QuickLook: Sendable, Codable, Equatable {
    public var bonePixels: Int
    public var boneAreaCm2: Double
    public var meanBoneBMD: Double?
    public var complete: Bool
    public var note: String?

    public enum CodingKeys: String, CodingKey {
        case complete, note
        case bonePixels = "bone_pixels", boneAreaCm2 = "bone_area_cm2", meanBoneBMD = "mean_bone_bmd_g_cm2"
    }

    public init(bonePixels: Int, boneAreaCm2: Double, meanBoneBMD: Double?, complete: Bool, note: String? = nil) {
        self.bonePixels = bonePixels; self.boneAreaCm2 = boneAreaCm2; self.meanBoneBMD = meanBoneBMD; self.complete = complete; self.note = note
    }
}

/// A patient movement, as stored with the scan.
public struct MotionRecord: Sendable, Codable, Equatable {
    public var line: Int
    public var shiftMM: Double
    /// True when it was over the limit and stopped the scan.
    public var stopped: Bool
    public enum CodingKeys: String, CodingKey { case line, stopped; case shiftMM = "shift_mm" }
    public init(line: Int, shiftMM: Double, stopped: Bool) { self.line = line; self.shiftMM = shiftMM; self.stopped = stopped }
}

/// A timing or stillness finding, told to clients as it happens and stored with the scan.
public struct ExamWarning: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case stall, jitter, overrun, underrun, heartbeat, budget, motion, missingLines = "missing_lines"
        /// The exam was aborted (the reason is the message).
        case aborted
        /// Something derived could not be kept on disk (the capture, the truth, was).
        case storage
        /// The exam started without a passing QC today, or under a service override of the
        /// QC lockout (the message says which); every report made from it shows it.
        case qc
    }
    public var kind: Kind
    public var message: String
    public var line: Int?
    public var value: Double?

    public init(kind: Kind, message: String, line: Int? = nil, value: Double? = nil) {
        self.kind = kind; self.message = message; self.line = line; self.value = value
    }
}

/// An exam as clients see it.
public struct ExamRecord: Sendable, Codable, Equatable {
    public var id: Int64
    public var patient: PatientRecord
    public var referral: String
    public var operatorName: String
    public var state: ExamState
    public var createdAt: String
    public var startedAt: String?
    public var endedAt: String?
    /// The sites to scan, in order (the checklist's plan, with the technologist's additions).
    public var plan: [Site]
    public var attempts: [SiteAttempt]
    public var checklist: ChecklistStatus
    public var warnings: [ExamWarning]
    /// Every exposure of the exam: the sum of its attempts' doses (references and scouts
    /// included), estimated where any part is.
    public var dose: ScanDose
    /// The worklist's order the exam fulfils; nil for an exam typed in.
    public var scheduled: ScheduledProcedure?
    /// Why it was aborted (an aborted exam's; nil for one aborted before the cause was kept).
    public var abortCause: AbortCause?

    public enum CodingKeys: String, CodingKey {
        case id, patient, referral, state, plan, attempts, checklist, warnings, dose, scheduled
        case operatorName = "operator", createdAt = "created_at", startedAt = "started_at", endedAt = "ended_at", abortCause = "abort_cause"
    }
}

/// An exam's plan and attempts, from which what comes next follows.
public protocol ExamProgress {
    var plan: [Site] { get }
    var attempts: [SiteAttempt] { get }
}

extension ExamProgress {
    /// The latest attempt at a site.
    public func latest(_ site: Site) -> SiteAttempt? { attempts.last { $0.site == site } }

    /// The first site of the plan with no completed or skipped attempt: what `exam.next` scans.
    public var nextSite: Site? {
        plan.first { site in
            guard let a = latest(site) else { return true }
            return a.status != .completed && a.status != .skipped
        }
    }
}

extension ExamRecord: ExamProgress {}

/// Exposure and dose-area product summed over scans; `estimated` when any part is the host's
/// estimate (a scan the device reported no dose for, docs/ICD-NOTES.md item 24).
public struct ScanDose: Sendable, Codable, Equatable {
    public var scans: Int
    public var exposureMs: Int
    public var dapMGyCm2: Double
    public var estimated: Bool

    public enum CodingKeys: String, CodingKey {
        case scans, estimated
        case exposureMs = "exposure_ms", dapMGyCm2 = "dap_mgy_cm2"
    }

    public init(scans: Int = 0, exposureMs: Int = 0, dapMGyCm2: Double = 0, estimated: Bool = false) {
        self.scans = scans; self.exposureMs = exposureMs; self.dapMGyCm2 = dapMGyCm2; self.estimated = estimated
    }

    /// The sum of doses.
    public static func total(_ doses: some Sequence<ScanDose>) -> ScanDose {
        doses.reduce(into: ScanDose()) { sum, d in
            sum.scans += d.scans; sum.exposureMs += d.exposureMs; sum.dapMGyCm2 += d.dapMGyCm2; sum.estimated = sum.estimated || d.estimated
        }
    }

    public mutating func add(_ o: ScanOutcome) {
        scans += 1
        exposureMs += Int(o.exposureMs)
        dapMGyCm2 += o.dapMGyCm2
        estimated = estimated || o.doseEstimated
    }
}

import DXAcquisition
import Foundation

/// One scheduled procedure from the Modality Worklist (PS3.4 Annex K): who, what, when, and
/// the identifiers every object of the exam must carry. The patient's name is DICOM's
/// (`Family^Given^Middle^Prefix^Suffix`) and travels unchanged into the exam and every
/// object, as do the accession number and the Study Instance UID.
public struct WorklistItem: Sendable, Codable, Equatable {
    public var patientID: String
    public var issuerOfPatientID: String?
    public var patientName: String
    /// M, F, O or empty, as the worklist gives it.
    public var patientSex: String
    /// YYYYMMDD, or empty when the worklist does not give it.
    public var patientBirthDate: String
    public var accessionNumber: String
    public var requestedProcedureID: String
    public var requestedProcedureDescription: String
    public var referringPhysicianName: String
    public var studyInstanceUID: String
    public var scheduledProcedureStepID: String
    public var scheduledProcedureStepDescription: String
    public var scheduledStationAETitle: String
    /// YYYYMMDD and HHMMSS (or shorter: HHMM), as scheduled.
    public var scheduledDate: String
    public var scheduledTime: String
    public var modality: String

    public enum CodingKeys: String, CodingKey {
        case patientID = "patient_id", issuerOfPatientID = "issuer_of_patient_id", patientName = "patient_name"
        case patientSex = "patient_sex", patientBirthDate = "patient_birth_date", accessionNumber = "accession_number"
        case requestedProcedureID = "requested_procedure_id", requestedProcedureDescription = "requested_procedure_description"
        case referringPhysicianName = "referring_physician_name", studyInstanceUID = "study_instance_uid"
        case scheduledProcedureStepID = "scheduled_procedure_step_id"
        case scheduledProcedureStepDescription = "scheduled_procedure_step_description"
        case scheduledStationAETitle = "scheduled_station_ae_title", scheduledDate = "scheduled_date", scheduledTime = "scheduled_time"
        case modality
    }

    /// The item a C-FIND answer describes; nil (with the reason) for one the exam cannot
    /// start from: without a patient ID or a Study Instance UID.
    public static func from(_ ds: DicomDataset) -> Result<WorklistItem, DicomFailure> {
        let step = ds.items(.scheduledProcedureStepSequence).first ?? DicomDataset()
        let item = WorklistItem(
            patientID: ds.text(.patientID) ?? "", issuerOfPatientID: ds.text(.issuerOfPatientID),
            patientName: ds.text(.patientName) ?? "", patientSex: ds.text(.patientSex) ?? "",
            patientBirthDate: ds.text(.patientBirthDate) ?? "", accessionNumber: ds.text(.accessionNumber) ?? "",
            requestedProcedureID: ds.text(.requestedProcedureID) ?? "",
            requestedProcedureDescription: ds.text(.requestedProcedureDescription) ?? "",
            referringPhysicianName: ds.text(.referringPhysicianName) ?? "", studyInstanceUID: ds.text(.studyInstanceUID) ?? "",
            scheduledProcedureStepID: step.text(.scheduledProcedureStepID) ?? "",
            scheduledProcedureStepDescription: step.text(.scheduledProcedureStepDescription) ?? "",
            scheduledStationAETitle: step.text(.scheduledStationAETitle) ?? "",
            scheduledDate: step.text(.scheduledProcedureStepStartDate) ?? "", scheduledTime: step.text(.scheduledProcedureStepStartTime) ?? "",
            modality: step.text(.modality) ?? "")
        if item.patientID.isEmpty { return .failure(DicomFailure("a worklist item without a patient ID (accession \(item.accessionNumber))")) }
        if item.studyInstanceUID.isEmpty { return .failure(DicomFailure("worklist item for patient \(item.patientID) without a Study Instance UID")) }
        return .success(item)
    }

    /// The scheduled start as ISO 8601 text for people (`2026-12-04 09:30`), or the raw
    /// values when they are not a date and time.
    public var scheduledStart: String {
        let d = scheduledDate, t = scheduledTime
        guard d.count == 8, d.allSatisfy(\.isNumber) else { return "\(d) \(t)".trimmingCharacters(in: .whitespaces) }
        let date = "\(d.prefix(4))-\(d.dropFirst(4).prefix(2))-\(d.suffix(2))"
        guard t.count >= 4, t.prefix(4).allSatisfy(\.isNumber) else { return date }
        return "\(date) \(t.prefix(2)):\(t.dropFirst(2).prefix(2))"
    }

    /// The patient's name as people write it: `Given Family` from DICOM's components.
    public var displayName: String { PersonName.display(patientName) }

    /// The birth date as ISO 8601 (`1956-03-14`), or nil when the worklist's is not a date.
    public var birthDateISO: String? { DicomDate.iso(patientBirthDate) }

    /// The order an exam started from this item fulfils: kept with the exam, carried into
    /// every object (empty values left out).
    public var order: ScheduledProcedure {
        func given(_ s: String) -> String? { s.isEmpty ? nil : s }
        return ScheduledProcedure(accessionNumber: accessionNumber, studyInstanceUID: studyInstanceUID, requestedProcedureID: given(requestedProcedureID),
                                  requestedProcedureDescription: given(requestedProcedureDescription),
                                  scheduledProcedureStepID: given(scheduledProcedureStepID),
                                  scheduledProcedureStepDescription: given(scheduledProcedureStepDescription),
                                  referringPhysicianName: given(referringPhysicianName), patientName: given(patientName),
                                  issuerOfPatientID: issuerOfPatientID.flatMap(given))
    }
}

/// An exam's registration from a worklist item: the patient as the worklist names them (the
/// display name for people, the DICOM name kept in the order), the referral from the
/// requested procedure and the referring physician unless given, and the order it fulfils.
/// The CLI (`dexa exam new --worklist`) and the console make exams from items through this.
public struct WorklistRegistration: Sendable, Codable, Equatable {
    public var patient: PatientRecord
    public var referral: String
    public var scheduled: ScheduledProcedure

    public enum CodingKeys: String, CodingKey { case patient, referral, scheduled }
}

extension WorklistItem {
    /// The exam this item starts; a failure says what the RIS must correct (the reference data
    /// need the sex as female or male, and a birth date for the patient's age).
    public func registration(ethnicity: String? = nil, referral: String? = nil) -> Result<WorklistRegistration, DicomFailure> {
        let sex: PatientRecord.Sex
        switch patientSex {
        case "F": sex = .female
        case "M": sex = .male
        default:
            return .failure(DicomFailure("the worklist gives patient \(patientID)'s sex as '\(patientSex)': the reference data need female or male; correct it in the RIS, or register the exam by hand"))
        }
        guard let birth = birthDateISO else {
            return .failure(DicomFailure("the worklist gives no valid birth date for patient \(patientID) ('\(patientBirthDate)'): correct it in the RIS"))
        }
        let words = [requestedProcedureDescription, referringPhysicianName.isEmpty ? "" : "referred by \(PersonName.display(referringPhysicianName))"]
            .filter { !$0.isEmpty }.joined(separator: ", ")
        let patient = PatientRecord(id: patientID, name: displayName, sex: sex, birthDate: birth, ethnicity: ethnicity)
        return .success(WorklistRegistration(patient: patient, referral: referral ?? (words.isEmpty ? "worklist \(accessionNumber)" : words), scheduled: order))
    }
}

/// A worklist's answers as a day's list: the items in the order of their scheduled start (then
/// accession number), and what was left out and why (an item the exam cannot start from, or
/// answers the association could not read), so that a list is never silently short.
public struct WorklistListing: Sendable, Equatable {
    public var items: [WorklistItem]
    public var leftOut: [String]

    public init(_ answers: DicomAssociation.WorklistAnswers) {
        var items: [WorklistItem] = [], leftOut: [String] = []
        if answers.leftOut > 0 { leftOut.append("\(answers.leftOut) item\(answers.leftOut == 1 ? "" : "s"): \(answers.note ?? "unreadable")") }
        for answer in answers.datasets {
            switch WorklistItem.from(answer) {
            case .success(let item): items.append(item)
            case .failure(let why): leftOut.append(why.description)
            }
        }
        self.items = items.sorted { ($0.scheduledDate, $0.scheduledTime, $0.accessionNumber) < ($1.scheduledDate, $1.scheduledTime, $1.accessionNumber) }
        self.leftOut = leftOut
    }
}

/// What the DX-1 asks the worklist for: today's steps for its AE title and modality.
public struct WorklistQuery: Sendable, Equatable {
    /// This station's AE title (Scheduled Station AE Title); nil asks for every station's.
    public var stationAETitle: String?
    /// YYYYMMDD, or a range `YYYYMMDD-YYYYMMDD`.
    public var date: String
    /// BMD (bone densitometry), or nil for any modality.
    public var modality: String?

    public init(stationAETitle: String?, date: String, modality: String? = "BMD") {
        self.stationAETitle = stationAETitle
        self.date = date
        self.modality = modality
    }

    /// The C-FIND identifier: matching keys filled, every return key present and empty
    /// (PS3.4 K.6.1.2).
    public var dataset: DicomDataset {
        var step = DicomDataset()
        step.set(.scheduledStationAETitle, stationAETitle)
        step.set(.scheduledProcedureStepStartDate, date)
        step.set(.scheduledProcedureStepStartTime, nil)
        step.set(.modality, modality)
        step.set(.scheduledPerformingPhysicianName, nil)
        step.set(.scheduledProcedureStepDescription, nil)
        step.set(.scheduledProcedureStepID, nil)
        step.set(.scheduledStationName, nil)
        var ds = DicomDataset()
        ds.set(.specificCharacterSet, "ISO_IR 192")
        ds.set(.accessionNumber, nil)
        ds.set(.referringPhysicianName, nil)
        ds.set(.patientName, nil)
        ds.set(.patientID, nil)
        ds.set(.issuerOfPatientID, nil)
        ds.set(.patientBirthDate, nil)
        ds.set(.patientSex, nil)
        ds.set(.studyInstanceUID, nil)
        ds.set(.requestedProcedureDescription, nil)
        ds.set(.requestedProcedureID, nil)
        ds.set(.scheduledProcedureStepSequence, items: [step])
        return ds
    }
}

/// DICOM dates (DA, PS3.5 §6.2).
public enum DicomDate {
    /// Today in the station's time zone, as DA.
    public static func today() -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone.current
        let c = calendar.dateComponents([.year, .month, .day], from: Date())
        return String(format: "%04d%02d%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
    }

    /// `YYYYMMDD` as `YYYY-MM-DD`, or nil when it is not a valid date.
    public static func iso(_ da: String) -> String? {
        guard da.count == 8, da.allSatisfy({ $0.isASCII && $0.isNumber }), let y = Int(da.prefix(4)), let m = Int(da.dropFirst(4).prefix(2)),
              let d = Int(da.suffix(2)), (1...12).contains(m), (1...31).contains(d), y >= 1800 else { return nil }
        return String(format: "%04d-%02d-%02d", y, m, d)
    }

    /// `YYYY-MM-DD` as `YYYYMMDD`, or nil when it is not that form.
    public static func da(_ iso: String) -> String? {
        let parts = iso.split(separator: "-")
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2 else { return nil }
        let s = parts.joined()
        return Self.iso(s) == nil ? nil : s
    }
}

/// DICOM person names (PN, PS3.5 §6.2.1).
public enum PersonName {
    /// `Family^Given^Middle^Prefix^Suffix` as people write it: `Prefix Given Middle Family
    /// Suffix`, components that are empty left out.
    public static func display(_ pn: String) -> String {
        let alphabetic = pn.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? pn
        let c = alphabetic.split(separator: "^", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        func at(_ i: Int) -> String { i < c.count ? c[i] : "" }
        return [at(3), at(1), at(2), at(0), at(4)].filter { !$0.isEmpty }.joined(separator: " ")
    }

    /// A name typed at the console as DICOM writes it: a name already in DICOM's form
    /// (with `^`) unchanged; `Family, Given` as `Family^Given`; `Given Names Family` (the
    /// console's order, docs/dicom-conformance.md) as `Family^Given Names`; one word as the
    /// family name. An exam started from the worklist carries the worklist's name instead.
    public static func dicom(_ typed: String) -> String {
        let t = typed.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        if t.contains("^") { return t }
        let parts = t.split(separator: ",", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.count == 2 { return "\(parts[0])^\(parts[1])" }
        let words = t.split(separator: " ")
        guard words.count > 1, let family = words.last else { return t }
        return "\(family)^\(words.dropLast().joined(separator: " "))"
    }
}

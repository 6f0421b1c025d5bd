import Foundation

/// The hospital's order an exam fulfils, as the Modality Worklist gave it (`dexa exam new
/// --worklist`): kept with the exam unchanged and carried into every DICOM object it makes,
/// so that the results are filed under the study the hospital scheduled. Nil for an exam
/// typed in at the console.
public struct ScheduledProcedure: Sendable, Codable, Equatable {
    public var accessionNumber: String
    public var studyInstanceUID: String
    public var requestedProcedureID: String?
    public var requestedProcedureDescription: String?
    public var scheduledProcedureStepID: String?
    public var scheduledProcedureStepDescription: String?
    public var referringPhysicianName: String?
    /// The patient's name in DICOM's form (`Family^Given`) as the worklist gave it.
    public var patientName: String?
    public var issuerOfPatientID: String?

    public enum CodingKeys: String, CodingKey {
        case accessionNumber = "accession_number", studyInstanceUID = "study_instance_uid"
        case requestedProcedureID = "requested_procedure_id", requestedProcedureDescription = "requested_procedure_description"
        case scheduledProcedureStepID = "scheduled_procedure_step_id", scheduledProcedureStepDescription = "scheduled_procedure_step_description"
        case referringPhysicianName = "referring_physician_name", patientName = "patient_name", issuerOfPatientID = "issuer_of_patient_id"
    }

    public init(accessionNumber: String, studyInstanceUID: String, requestedProcedureID: String? = nil, requestedProcedureDescription: String? = nil,
                scheduledProcedureStepID: String? = nil, scheduledProcedureStepDescription: String? = nil, referringPhysicianName: String? = nil,
                patientName: String? = nil, issuerOfPatientID: String? = nil) {
        self.accessionNumber = accessionNumber; self.studyInstanceUID = studyInstanceUID; self.requestedProcedureID = requestedProcedureID
        self.requestedProcedureDescription = requestedProcedureDescription; self.scheduledProcedureStepID = scheduledProcedureStepID
        self.scheduledProcedureStepDescription = scheduledProcedureStepDescription; self.referringPhysicianName = referringPhysicianName
        self.patientName = patientName; self.issuerOfPatientID = issuerOfPatientID
    }

    /// What is wrong with it for DICOM, or nil: each value within its VR's length (PS3.5
    /// §6.2: SH 16, LO 64, PN 64 a component group, UI 64) and without control characters
    /// or backslashes; the Study Instance UID a UID.
    public var problem: String? {
        func check(_ name: String, _ value: String?, max: Int) -> String? {
            guard let value else { return nil }
            if value.count > max { return "\(name) longer than \(max) characters" }
            if value.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == "\\" }) { return "\(name) with a control character or a backslash" }
            return nil
        }
        let uid = studyInstanceUID
        let parts = uid.split(separator: ".", omittingEmptySubsequences: false)
        if uid.isEmpty || uid.count > 64 || !parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } && ($0 == "0" || !$0.hasPrefix("0")) }) {
            return "study_instance_uid '\(uid)' is not a UID"
        }
        return check("accession_number", accessionNumber, max: 16) ?? check("requested_procedure_id", requestedProcedureID, max: 16)
            ?? check("requested_procedure_description", requestedProcedureDescription, max: 64)
            ?? check("scheduled_procedure_step_id", scheduledProcedureStepID, max: 16)
            ?? check("scheduled_procedure_step_description", scheduledProcedureStepDescription, max: 64)
            ?? check("referring_physician_name", referringPhysicianName, max: 64) ?? check("patient_name", patientName, max: 64)
            ?? check("issuer_of_patient_id", issuerOfPatientID, max: 64)
    }
}

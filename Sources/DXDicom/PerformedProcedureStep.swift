import DXAcquisition
import Foundation

/// An object of the exam as the procedure step lists it.
public struct PerformedObject: Sendable, Equatable {
    public var name: String
    public var sopClassUID: String
    public var sopInstanceUID: String

    public init(name: String, sopClassUID: String, sopInstanceUID: String) {
        self.name = name; self.sopClassUID = sopClassUID; self.sopInstanceUID = sopInstanceUID
    }
}

/// The exam as a Modality Performed Procedure Step (PS3.4 F.7.2, PS3.3 B.17): N-CREATE when
/// it starts (IN PROGRESS), one N-SET when it ends (COMPLETED or DISCONTINUED) with the
/// performed series and the dose. Every attribute the N-SET sets is created empty first
/// (F.7.2.1.2). The dose goes both in the dose report (the current standard's place, which the
/// N-SET references) and in the MPPS's Radiation Dose attributes that PS3.3 2017c retired and
/// many RIS still read (docs/dicom-conformance.md).
extension ExamObjects {
    public var mppsInstanceUID: String { uids.uid(exam: examKey, [UIDPath.performedProcedureStep]) }

    /// Performed Procedure Step ID (SH, 16 characters): the exam's number on this station.
    public var performedProcedureStepID: String { "DX\(results.examID)" }

    /// The N-CREATE's attributes: the order, the patient, the step IN PROGRESS since `started`.
    public func mppsInProgress(started: Date) -> DicomDataset {
        var ds = DicomDataset()
        var step = DicomDataset()
        step.set(.studyInstanceUID, studyInstanceUID)
        step.set(.referencedStudySequence, items: [])
        step.set(.accessionNumber, study.accessionNumber)
        step.set(.requestedProcedureID, study.requestedProcedureID)
        step.set(.requestedProcedureDescription, study.requestedProcedureDescription)
        step.set(.scheduledProcedureStepID, study.scheduledProcedureStepID)
        step.set(.scheduledProcedureStepDescription, study.scheduledProcedureStepDescription)
        step.set(.scheduledProtocolCodeSequence, items: [])
        ds.set(.scheduledStepAttributesSequence, items: [step])
        setPatient(&ds)
        ds.set(.referencedPatientSequence, items: [])
        ds.set(.performedProcedureStepID, performedProcedureStepID)
        ds.set(.performedStationAETitle, station.aeTitle)
        ds.set(.performedStationName, station.stationName)
        // SH: at most 16 characters (the institution's name may be longer).
        ds.set(.performedLocation, station.institutionName.map { String($0.prefix(16)) })
        let (date, time) = Self.dateTime(started)
        ds.set(.performedProcedureStepStartDate, date)
        ds.set(.performedProcedureStepStartTime, time)
        ds.set(.performedProcedureStepStatus, "IN PROGRESS")
        ds.set(.performedProcedureStepDescription, study.requestedProcedureDescription ?? "Bone densitometry (DXA)")
        ds.set(.performedProcedureTypeDescription, nil)
        ds.set(.procedureCodeSequence, items: [Codes.dxa.item])
        ds.set(.performedProcedureStepEndDate, nil)
        ds.set(.performedProcedureStepEndTime, nil)
        ds.set(.commentsOnThePerformedProcedureStep, nil)
        ds.set(.performedProcedureStepDiscontinuationReasonCodeSequence, items: [])
        ds.set(.modality, "BMD")
        ds.set(.studyID, String(results.examID))
        ds.set(.performedProtocolCodeSequence, items: [])
        ds.set(.performedSeriesSequence, items: [])
        // The retired Radiation Dose attributes, created empty to be set at the end.
        ds.set(.imageAndFluoroscopyAreaDoseProduct, nil)
        ds.set(.totalNumberOfExposures, nil)
        ds.set(.exposureDoseSequence, items: [])
        ds.set(.commentsOnRadiationDose, nil)
        // Always UTF-8: the N-SET's text (an abort's words, the operator's name) must fit the
        // N-CREATE's character set, which a later N-SET cannot change (F.7.2.2.1, F.7.2.2.3).
        ds.set(.specificCharacterSet, "ISO_IR 192")
        return ds
    }

    /// The final N-SET: COMPLETED, or DISCONTINUED with the reason when the exam was aborted;
    /// the end time; each series with the objects made of it (`objects`, by name: image-SITE,
    /// report-N, results-sr, dose-sr); the dose of every exposure.
    public func mppsEnd(objects: [PerformedObject], ended: Date) -> DicomDataset {
        var ds = DicomDataset()
        let discontinued = results.state != .completed
        ds.set(.performedProcedureStepStatus, discontinued ? "DISCONTINUED" : "COMPLETED")
        let (date, time) = Self.dateTime(ended)
        ds.set(.performedProcedureStepEndDate, date)
        ds.set(.performedProcedureStepEndTime, time)
        if discontinued {
            ds.set(.performedProcedureStepDiscontinuationReasonCodeSequence, items: [Self.discontinuation(results.abortCause, words: results.abortReason).item])
            ds.set(.commentsOnThePerformedProcedureStep, "Exam \(results.state.rawValue)\(results.abortReason.map { ": \($0)" } ?? "")")
        }
        // The performed series, in the order of their numbers.
        var performed: [(Series, images: [DicomDataset], others: [DicomDataset])] = []
        for o in objects {
            guard let s = series(ofObjectNamed: o.name) else { continue }
            var ref = DicomDataset()
            ref.set(.referencedSOPClassUID, o.sopClassUID)
            ref.set(.referencedSOPInstanceUID, o.sopInstanceUID)
            let isImage = o.sopClassUID == SOPClass.secondaryCapture
            if let i = performed.firstIndex(where: { $0.0.number == s.number }) {
                if isImage { performed[i].images.append(ref) } else { performed[i].others.append(ref) }
            } else {
                performed.append((s, isImage ? [ref] : [], isImage ? [] : [ref]))
            }
        }
        // A step ended before anything was made still names a series (PS3.4 F.7.2-1 note 2):
        // the first site of the exam, empty.
        if performed.isEmpty {
            let first = results.exposures.first.flatMap { Site(rawValue: $0.site) } ?? results.sites.first.flatMap { Site(rawValue: $0.site) } ?? .apSpine
            performed.append((Series.site(first), [], []))
        }
        ds.set(.performedSeriesSequence, items: performed.sorted { $0.0.number < $1.0.number }.map { s, images, others in
            var item = DicomDataset()
            item.set(.performingPhysicianName, nil)
            item.set(.protocolName, s.description)
            item.set(.operatorsName, results.operatorName.map(PersonName.dicom))
            item.set(.seriesInstanceUID, seriesInstanceUID(s))
            item.set(.seriesDescription, s.description)
            item.set(.retrieveAETitle, nil)
            item.set(.referencedImageSequence, items: images)
            item.set(.referencedNonImageCompositeSOPInstanceSequence, items: others)
            return item
        })
        // The dose: the exam's DAP in dGy·cm² (the attribute's unit), and each exposing
        // attempt's exposure time and tube current.
        let dose = results.dose
        ds.set(.imageAndFluoroscopyAreaDoseProduct, String(format: "%.5f", dose.dapMGyCm2 / 100))
        ds.set(.totalNumberOfExposures, dose.scans)
        ds.set(.exposureDoseSequence, items: results.exposures.map { e in
            var item = DicomDataset()
            item.set(.radiationMode, "CONTINUOUS")
            if let ua = e.tubeCurrentUA { item.set(.xRayTubeCurrentInMicroamperes, Int(ua)) }
            item.set(.exposureTime, e.dose.exposureMs)
            item.set(.commentsOnRadiationDose, String(format: "%@ attempt %d (%@): DAP %.2f mGy*cm2 over %d exposures%@",
                                                      Site(rawValue: e.site)?.title ?? e.site, e.attempt, e.status, e.dose.dapMGyCm2, e.dose.scans,
                                                      e.dose.estimated ? ", estimated by the host" : ""))
            return item
        })
        ds.set(.commentsOnRadiationDose, String(format: "DAP %.2f mGy*cm2 over %d exposures, %.1f s of exposure%@; each scan's in the X-Ray Radiation Dose SR",
                                                dose.dapMGyCm2, dose.scans, Double(dose.exposureMs) / 1000, dose.estimated ? " (estimated in part)" : ""))
        ds.set(.procedureCodeSequence, items: [Codes.dxa.item])
        if ds.needsUnicode { ds.set(.specificCharacterSet, "ISO_IR 192") }
        return ds
    }

    /// The series an object of the exam belongs to, by its name.
    public func series(ofObjectNamed name: String) -> Series? {
        if name.hasPrefix("image-") { return Site(rawValue: String(name.dropFirst("image-".count))).map(Series.site) }
        if name.hasPrefix("report-") { return .report }
        if name == "results-sr" { return .resultsReport }
        if name == "dose-sr" { return .doseReport }
        return nil
    }

    /// Why the step was discontinued (PS3.16 CID 9301): the cause the technologist chose at
    /// the abort. Results published before the cause was kept have only words; for them the
    /// code is read from the words. The words themselves go in the step's comments.
    public static func discontinuation(_ cause: AbortCause?, words: String?) -> Code {
        switch cause {
        case .equipmentFailure: Codes.equipmentFailure
        case .patientRefused: Codes.patientRefused
        case .patientCondition: Codes.patientCondition
        case .wrongWorklistEntry: Codes.wrongWorklistEntry
        case .other: Codes.unspecifiedReason
        case nil: discontinuation(words)
        }
    }

    /// The code read from the words alone (results from before the cause was kept): an
    /// equipment fault, the patient's refusal or condition, a wrong worklist entry; otherwise
    /// "unspecified".
    public static func discontinuation(_ reason: String?) -> Code {
        // The most specific first: "wrong worklist entry, operator error" is the entry, "patient
        // refused, afraid of the X-rays" the refusal.
        let r = (reason ?? "").lowercased()
        if ["worklist", "wrong patient", "wrong order"].contains(where: r.contains) { return Codes.wrongWorklistEntry }
        if ["refus", "declin"].contains(where: r.contains) { return Codes.patientRefused }
        if ["pain", "unwell", "condition", "could not lie", "cannot lie"].contains(where: r.contains) { return Codes.patientCondition }
        if ["fault", "interlock", "device", "equipment", "x-ray", "tube", "error"].contains(where: r.contains) { return Codes.equipmentFailure }
        return Codes.unspecifiedReason
    }
}

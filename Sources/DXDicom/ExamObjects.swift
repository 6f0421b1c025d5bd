import DXAcquisition
import DXDecomposition
import DXReport
import Foundation

/// This station as DICOM names it: in every object's equipment and in the associations.
public struct DicomStation: Sendable, Codable, Equatable {
    public var aeTitle: String
    public var stationName: String
    public var institutionName: String?
    public var deviceSerialNumber: String
    public var softwareVersions: String
    public var manufacturer: String
    public var modelName: String

    public enum CodingKeys: String, CodingKey {
        case aeTitle = "ae_title", stationName = "station_name", institutionName = "institution_name"
        case deviceSerialNumber = "device_serial_number", softwareVersions = "software_versions", manufacturer
        case modelName = "model_name"
    }

    public init(aeTitle: String, stationName: String, institutionName: String? = nil, deviceSerialNumber: String, softwareVersions: String,
                manufacturer: String = "DX-1 project", modelName: String = "DX-1") {
        self.aeTitle = aeTitle; self.stationName = stationName; self.institutionName = institutionName
        self.deviceSerialNumber = deviceSerialNumber; self.softwareVersions = softwareVersions
        self.manufacturer = manufacturer; self.modelName = modelName
    }
}

/// The study an exam's objects belong to: from the worklist item it started from, or made
/// here when it was typed in. Every object of the exam carries the same.
public struct DicomStudy: Sendable, Codable, Equatable {
    /// The worklist's Study Instance UID; nil: one is made from the exam (UIDGenerator).
    public var studyInstanceUID: String?
    public var accessionNumber: String?
    public var referringPhysicianName: String?
    public var requestedProcedureDescription: String?
    /// The patient's name in DICOM's form as the worklist gave it; nil: from the exam's name
    /// (PersonName.dicom).
    public var patientName: String?
    public var issuerOfPatientID: String?
    /// The order's identifiers for the Request Attributes Sequence (IHE Scheduled Workflow).
    public var requestedProcedureID: String?
    public var scheduledProcedureStepID: String?
    public var scheduledProcedureStepDescription: String?

    public enum CodingKeys: String, CodingKey {
        case requestedProcedureID = "requested_procedure_id", scheduledProcedureStepID = "scheduled_procedure_step_id"
        case scheduledProcedureStepDescription = "scheduled_procedure_step_description"
        case studyInstanceUID = "study_instance_uid", accessionNumber = "accession_number"
        case referringPhysicianName = "referring_physician_name", requestedProcedureDescription = "requested_procedure_description"
        case patientName = "patient_name", issuerOfPatientID = "issuer_of_patient_id"
    }

    public init(studyInstanceUID: String? = nil, accessionNumber: String? = nil, referringPhysicianName: String? = nil,
                requestedProcedureDescription: String? = nil, patientName: String? = nil, issuerOfPatientID: String? = nil) {
        self.studyInstanceUID = studyInstanceUID; self.accessionNumber = accessionNumber
        self.referringPhysicianName = referringPhysicianName; self.requestedProcedureDescription = requestedProcedureDescription
        self.patientName = patientName; self.issuerOfPatientID = issuerOfPatientID
    }

    /// The study of an exam started from the worklist's `order`.
    public init(_ order: ScheduledProcedure) {
        self.init(studyInstanceUID: order.studyInstanceUID, accessionNumber: order.accessionNumber, referringPhysicianName: order.referringPhysicianName,
                  requestedProcedureDescription: order.requestedProcedureDescription, patientName: order.patientName,
                  issuerOfPatientID: order.issuerOfPatientID)
        requestedProcedureID = order.requestedProcedureID
        scheduledProcedureStepID = order.scheduledProcedureStepID
        scheduledProcedureStepDescription = order.scheduledProcedureStepDescription
    }
}

/// One DICOM object of an exam, ready to write or send.
public struct DicomObject: Sendable, Equatable {
    /// What it is, for people and for the queue: `image-spine_ap`, `report-1`.
    public var name: String
    public var sopClassUID: String
    public var sopInstanceUID: String
    public var dataset: DicomDataset
}

/// An exam's objects, built from its results (ExamResults) and decomposed scans, nothing
/// else: each site's image with its ROIs and labels and each report page as Secondary
/// Capture (Modality BMD). The identifiers follow docs/dicom-conformance.md.
public struct ExamObjects: Sendable {
    public var results: ExamResults
    public var station: DicomStation
    public var study: DicomStudy
    public var uids: UIDGenerator
    /// 1 for the exam's first results; 2, 3, ... after corrections: a revised object is a new
    /// instance (its UID carries the revision) in the same series.
    public var revision: Int
    /// The procedure step the RIS was told of (MPPS), when one was: every object refers to it
    /// (Referenced Performed Procedure Step Sequence). nil when no MPPS peer announced the exam.
    public var performedStepUID: String?

    /// The Referenced Performed Procedure Step Sequence's item, or none.
    var performedStepReference: [DicomDataset] {
        guard let uid = performedStepUID else { return [] }
        var item = DicomDataset()
        item.set(.referencedSOPClassUID, SOPClass.modalityPerformedProcedureStep)
        item.set(.referencedSOPInstanceUID, uid)
        return [item]
    }

    /// A series of the exam: one for each site's image (as DXA systems send a scan), one
    /// for the report's pages. Numbers as docs/dicom-conformance.md lists them.
    public struct Series: Sendable, Equatable {
        public var number: Int
        public var description: String
        /// Body Part Examined (PS3.16 CID 4031) and Laterality, for a site's series.
        public var bodyPart: String?
        public var laterality: String?

        /// A site's series: AP spine 1, left hip 2, right hip 3, lateral spine 4.
        public static func site(_ site: Site) -> Series {
            switch site {
            case .apSpine: Series(number: 1, description: "AP lumbar spine", bodyPart: "LSPINE", laterality: nil)
            case .leftHip: Series(number: 2, description: "Left hip", bodyPart: "HIP", laterality: "L")
            case .rightHip: Series(number: 3, description: "Right hip", bodyPart: "HIP", laterality: "R")
            case .lateralSpine: Series(number: 4, description: "Lateral spine (VFA)", bodyPart: "TLSPINE", laterality: nil)
            }
        }

        public static let report = Series(number: 10, description: "Bone densitometry report", bodyPart: nil, laterality: nil)
    }

    /// `study` nil: the worklist's order the exam fulfils, or (typed in) a study of its own.
    public init(results: ExamResults, station: DicomStation, study: DicomStudy? = nil, uids: UIDGenerator, revision: Int = 1) {
        self.results = results; self.station = station; self.uids = uids; self.revision = revision
        self.study = study ?? results.scheduled.map(DicomStudy.init) ?? DicomStudy()
    }

    /// The exam's name for its UIDs: number and creation time (see UIDGenerator.uid).
    var examKey: String { "\(results.examID)@\(results.createdAt ?? results.examDate)" }

    public var studyInstanceUID: String {
        if let uid = study.studyInstanceUID, !uid.isEmpty { return uid }
        return uids.uid(exam: examKey)
    }

    public func seriesInstanceUID(_ s: Series) -> String { uids.uid(exam: examKey, [s.number]) }

    public func instanceUID(_ s: Series, _ n: Int) -> String { uids.uid(exam: examKey, [s.number, n] + (revision > 1 ? [revision] : [])) }

    /// Every image object: the sites' images (those with a result and a readable scan), then
    /// the report's pages.
    public func images(scans: [String: DecomposedScan], created: Date = Date()) throws(DicomFailure) -> [DicomObject] {
        var out: [DicomObject] = []
        for site in results.sites {
            guard let scan = scans[site.site], let which = Site(rawValue: site.site) else { continue }
            let image: RGBImage?
            do { image = try ReportRaster.site(site, scan: scan) } catch { throw DicomFailure("\(site.title): \(error.description)") }
            guard let image else { continue }
            out.append(secondaryCapture(image, series: .site(which), number: 1, name: "image-\(site.site)", description: site.title, created: created))
        }
        let pages: [RGBImage]
        do { pages = try ReportRaster.pages(results, scans: scans, generated: created) } catch { throw DicomFailure("report: \(error.description)") }
        for (k, page) in pages.enumerated() {
            out.append(secondaryCapture(page, series: .report, number: k + 1, name: "report-\(k + 1)",
                                        description: "Report page \(k + 1) of \(pages.count)", created: created))
        }
        return out
    }

    /// The patient, study and equipment attributes every object carries (PS3.3 C.7.1.1,
    /// C.7.2.1, C.7.5.1), and the SOP Common ones (C.12.1).
    func common(sopClass: String, instance: String, created: Date) -> DicomDataset {
        var ds = DicomDataset()
        ds.set(.sopClassUID, sopClass)
        ds.set(.sopInstanceUID, instance)
        let (date, time) = Self.dateTime(created)
        ds.set(.instanceCreationDate, date)
        ds.set(.instanceCreationTime, time)
        let offset = TimeZone.current.secondsFromGMT(for: created) / 60
        ds.set(.timezoneOffsetFromUTC, String(format: "%@%02d%02d", offset < 0 ? "-" : "+", abs(offset) / 60, abs(offset) % 60))
        setPatient(&ds)
        // Study
        ds.set(.studyInstanceUID, studyInstanceUID)
        let started = (results.startedAt ?? results.createdAt).flatMap { ISO8601DateFormatter().date(from: $0) }
        let studyDateTime = started.map(Self.dateTime)
        ds.set(.studyDate, studyDateTime?.date ?? DicomDate.da(results.examDate))
        ds.set(.studyTime, studyDateTime?.time)
        ds.set(.referringPhysicianName, study.referringPhysicianName)
        ds.set(.studyID, String(results.examID))
        ds.set(.accessionNumber, study.accessionNumber)
        if let d = study.requestedProcedureDescription, !d.isEmpty { ds.set(.studyDescription, d) } else { ds.set(.studyDescription, "Bone densitometry (DXA)") }
        // The order this exam fulfils (IHE Scheduled Workflow: Request Attributes Sequence).
        if study.requestedProcedureID != nil || study.scheduledProcedureStepID != nil {
            var request = DicomDataset()
            request.set(.requestedProcedureID, study.requestedProcedureID)
            request.set(.scheduledProcedureStepID, study.scheduledProcedureStepID)
            if let d = study.scheduledProcedureStepDescription, !d.isEmpty { request.set(.scheduledProcedureStepDescription, d) }
            ds.set(.requestAttributesSequence, items: [request])
        }
        // Equipment
        ds.set(.manufacturer, station.manufacturer)
        if let i = station.institutionName, !i.isEmpty { ds.set(.institutionName, i) }
        ds.set(.stationName, station.stationName)
        ds.set(.manufacturerModelName, station.modelName)
        ds.set(.deviceSerialNumber, station.deviceSerialNumber)
        ds.set(.softwareVersions, station.softwareVersions)
        return ds
    }

    /// The patient (PS3.3 C.7.1.1), as every object and the procedure step name them.
    func setPatient(_ ds: inout DicomDataset) {
        let p = results.patient
        ds.set(.patientName, study.patientName ?? PersonName.dicom(p.name))
        ds.set(.patientID, p.id)
        if let issuer = study.issuerOfPatientID, !issuer.isEmpty { ds.set(.issuerOfPatientID, issuer) }
        ds.set(.patientBirthDate, DicomDate.da(p.birthDate))
        ds.set(.patientSex, Self.sex(p.sex))
    }

    /// An RGB Secondary Capture Image (PS3.3 A.8.1): the General Series with Modality BMD, the
    /// SC Equipment's conversion type WSD (made at a workstation), the image's pixels.
    func secondaryCapture(_ image: RGBImage, series: Series, number: Int, name: String, description: String, created: Date) -> DicomObject {
        let instance = instanceUID(series, number)
        var ds = common(sopClass: SOPClass.secondaryCapture, instance: instance, created: created)
        // General Series
        ds.set(.modality, "BMD")
        ds.set(.seriesInstanceUID, seriesInstanceUID(series))
        ds.set(.seriesNumber, series.number)
        ds.set(.seriesDescription, series.description)
        if performedStepUID != nil { ds.set(.referencedPerformedProcedureStepSequence, items: performedStepReference) }
        // Laterality (type 2C): a hip's; absent for the spine (unpaired); empty for the report,
        // which has no one body part (dciodvfy asks for it when Body Part Examined is absent).
        if let laterality = series.laterality { ds.set(.laterality, laterality) } else if series.bodyPart == nil { ds.set(.laterality, nil) }
        if let part = series.bodyPart { ds.set(.bodyPartExamined, part) }
        // SC Equipment
        ds.set(.conversionType, "WSD")
        // General Image: a revision's objects numbered after the earlier revisions' (100 each),
        // and said to replace them.
        ds.set(.instanceNumber, (revision - 1) * 100 + number)
        if revision > 1 {
            ds.set(.imageComments, "Revision \(revision) of this exam's results, after a correction: replaces revision \(revision - 1)")
        }
        ds.set(.patientOrientation, nil)
        let (date, time) = Self.dateTime(created)
        ds.set(.contentDate, date)
        ds.set(.contentTime, time)
        ds.set(.imageType, "DERIVED\\SECONDARY")
        ds.set(.burnedInAnnotation, "YES")
        ds.set(.derivationDescription, description)
        // Image Pixel
        ds.set(.samplesPerPixel, 3)
        ds.set(.photometricInterpretation, "RGB")
        ds.set(.planarConfiguration, 0)
        ds.set(.rows, image.rows)
        ds.set(.columns, image.columns)
        ds.set(.bitsAllocated, 8)
        ds.set(.bitsStored, 8)
        ds.set(.highBit, 7)
        ds.set(.pixelRepresentation, 0)
        ds[.pixelData] = .bytes(image.pixels.count % 2 == 0 ? image.pixels : image.pixels + [0], words: false)
        if ds.needsUnicode { ds.set(.specificCharacterSet, "ISO_IR 192") }
        return DicomObject(name: name, sopClassUID: SOPClass.secondaryCapture, sopInstanceUID: instance, dataset: ds)
    }

    /// M, F or O (PS3.3 C.7.1.1), from the exam's sex.
    static func sex(_ s: String) -> String {
        switch s.lowercased() {
        case "female", "f": "F"
        case "male", "m": "M"
        default: "O"
        }
    }

    /// DA and TM of `date` in the station's time zone (Timezone Offset From UTC says which).
    static func dateTime(_ date: Date) -> (date: String, time: String) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone.current
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return (String(format: "%04d%02d%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0), String(format: "%02d%02d%02d", c.hour ?? 0, c.minute ?? 0, c.second ?? 0))
    }
}

import DXAcquisition
import DXAnalysis
import DXDecomposition
import Foundation

/// The codes of the results and dose reports: DICOM's own (DCM), SNOMED CT (SCT), LOINC (LN)
/// where a code for exactly that quantity and region exists, and this product's coding
/// scheme (99DXA, declared in each report) for the rest. Sources: docs/dicom-conformance.md.
public enum Codes {
    // Document titles and structure (PS3.16 TID 1500, 1501, 1600, 10001).
    public static let imagingMeasurementReport = Code("126000", "DCM", "Imaging Measurement Report")
    public static let language = Code("121049", "DCM", "Language of Content Item and Descendants")
    public static let english = Code("en-US", "RFC5646", "English (United States)")
    public static let observerType = Code("121005", "DCM", "Observer Type")
    public static let device = Code("121007", "DCM", "Device")
    public static let deviceObserverUID = Code("121012", "DCM", "Device Observer UID")
    public static let deviceObserverName = Code("121013", "DCM", "Device Observer Name")
    public static let deviceObserverManufacturer = Code("121014", "DCM", "Device Observer Manufacturer")
    public static let deviceObserverModelName = Code("121015", "DCM", "Device Observer Model Name")
    public static let deviceObserverSerialNumber = Code("121016", "DCM", "Device Observer Serial Number")
    public static let procedureReported = Code("121058", "DCM", "Procedure reported")
    public static let dxa = Code("241686001", "SCT", "Dual energy X-ray absorptiometry")
    public static let imageLibrary = Code("111028", "DCM", "Image Library")
    /// CID 7010's title of a rejection note (IHE IOCM), and TID 2010's description.
    public static let rejectedForQualityReasons = Code("113001", "DCM", "Rejected for Quality Reasons")
    public static let keyObjectDescription = Code("113012", "DCM", "Key Object Description")
    public static let imageLibraryGroup = Code("126200", "DCM", "Image Library Group")
    public static let imagingMeasurements = Code("126010", "DCM", "Imaging Measurements")
    public static let measurementGroup = Code("125007", "DCM", "Measurement Group")
    public static let trackingIdentifier = Code("112039", "DCM", "Tracking Identifier")
    public static let trackingUniqueIdentifier = Code("112040", "DCM", "Tracking Unique Identifier")
    public static let findingSite = Code("363698007", "SCT", "Finding Site")
    public static let laterality = Code("272741003", "SCT", "Laterality")
    public static let left = Code("7771000", "SCT", "Left")
    public static let right = Code("24028007", "SCT", "Right")
    public static let qualitativeEvaluations = Code("C0034375", "UMLS", "Qualitative Evaluations")
    public static let comment = Code("121106", "DCM", "Comment")
    // Anatomy (SNOMED CT, PS3.16 CID 4031 and CID 7602/7603).
    public static let lumbarSpine = Code("122496007", "SCT", "Lumbar spine")
    public static let hip = Code("29836001", "SCT", "Hip")
    public static let proximalFemur = Code("310651003", "SCT", "Proximal femur")
    public static let thoracolumbarSpine = Code("1217256009", "SCT", "Thoraco-lumbar spine")
    public static let vertebrae = ["L1": Code("66794005", "SCT", "L1 vertebra"), "L2": Code("14293000", "SCT", "L2 vertebra"),
                                   "L3": Code("36470004", "SCT", "L3 vertebra"), "L4": Code("11994002", "SCT", "L4 vertebra")]
    // Quantities: LOINC where the code names exactly this region.
    public static let spineBMD = Code("24966-4", "LN", "DXA Lumbar spine [Mass/Area] Bone density")
    public static let spineT = Code("38267-1", "LN", "DXA Lumbar spine [T-score] Bone density")
    public static let spineZ = Code("85394-5", "LN", "DXA Lumbar spine [Z-score] Bone density")
    public static let hipT = Code("38264-8", "LN", "DXA Hip [T-score] Bone density")
    public static let leftHipBMD = Code("46278-8", "LN", "DXA Hip - left [Mass/Area] Bone density")
    // This product's scheme, for what no standard code names.
    public static let privateScheme = "99DXA"
    public static let bmd = Code("BMD", privateScheme, "Bone mineral density")
    public static let bmc = Code("BMC", privateScheme, "Bone mineral content")
    public static let boneArea = Code("AREA", privateScheme, "Projected bone area")
    public static let tScore = Code("TSCORE", privateScheme, "T-score")
    public static let zScore = Code("ZSCORE", privateScheme, "Z-score")
    public static let diagnosis = Code("DIAGNOSIS", privateScheme, "Densitometric classification")
    public static let vfa = Code("VFA", privateScheme, "Vertebral fracture assessment")
    public static let qualityControl = Code("QC", privateScheme, "Quality control")
    // Dose (PS3.16 TID 10001, 10002, 10003, 10007).
    public static let doseReport = Code("113701", "DCM", "X-Ray Radiation Dose Report")
    public static let projectionXRay = Code("113704", "DCM", "Projection X-Ray")
    public static let hasIntent = Code("363703001", "SCT", "Has Intent")
    public static let diagnosticIntent = Code("261004008", "SCT", "Diagnostic Intent")
    public static let acquisitionDeviceType = Code("122142", "DCM", "Acquisition Device Type")
    public static let integratedProjectionSystem = Code("113958", "DCM", "Integrated Projection Radiography System")
    public static let scopeOfAccumulation = Code("113705", "DCM", "Scope of Accumulation")
    public static let study = Code("113014", "DCM", "Study")
    public static let studyInstanceUID = Code("110180", "DCM", "Study Instance UID")
    public static let detectorDataAvailable = Code("113945", "DCM", "X-Ray Detector Data Available")
    public static let sourceDataAvailable = Code("113943", "DCM", "X-Ray Source Data Available")
    public static let mechanicalDataAvailable = Code("113944", "DCM", "X-Ray Mechanical Data Available")
    public static let yes = Code("373066001", "SCT", "Yes")
    public static let no = Code("373067005", "SCT", "No")
    public static let accumulatedDose = Code("113702", "DCM", "Accumulated X-Ray Dose Data")
    public static let acquisitionPlane = Code("113764", "DCM", "Acquisition Plane")
    public static let singlePlane = Code("113622", "DCM", "Single Plane")
    public static let dapTotal = Code("113722", "DCM", "Dose Area Product Total")
    public static let totalAcquisitionTime = Code("113855", "DCM", "Total Acquisition Time")
    public static let irradiationEvent = Code("113706", "DCM", "Irradiation Event X-Ray Data")
    public static let irradiationEventUID = Code("113769", "DCM", "Irradiation Event UID")
    public static let dateTimeStarted = Code("111526", "DCM", "DateTime Started")
    public static let irradiationEventType = Code("113721", "DCM", "Irradiation Event Type")
    public static let steppingAcquisition = Code("113612", "DCM", "Stepping Acquisition")
    public static let acquisitionProtocol = Code("125203", "DCM", "Acquisition Protocol")
    public static let targetRegion = Code("123014", "DCM", "Target Region")
    public static let dap = Code("122130", "DCM", "Dose Area Product")
    public static let exposureTime = Code("113824", "DCM", "Exposure Time")
    public static let tubeCurrent = Code("113734", "DCM", "X-Ray Tube Current")
    public static let sourceOfDoseInformation = Code("113854", "DCM", "Source of Dose Information")
    public static let automatedDataCollection = Code("113856", "DCM", "Automated Data Collection")
    public static let systemCalculated = Code("113940", "DCM", "System Calculated")
    // Why a procedure step was discontinued (PS3.16 CID 9301).
    public static let equipmentFailure = Code("110501", "DCM", "Equipment failure")
    public static let patientRefused = Code("110505", "DCM", "Patient refused to continue procedure")
    public static let unspecifiedReason = Code("110513", "DCM", "Discontinued for unspecified reason")
    public static let wrongWorklistEntry = Code("110514", "DCM", "Incorrect worklist entry selected")
    public static let patientCondition = Code("110515", "DCM", "Patient condition prevented continuing")

    /// The site's anatomy and laterality.
    public static func region(_ site: Site) -> (Code, Code?) {
        switch site {
        case .apSpine: (lumbarSpine, nil)
        case .leftHip: (hip, left)
        case .rightHip: (hip, right)
        case .lateralSpine: (thoracolumbarSpine, nil)
        }
    }
}

/// The series of the two reports, after the sites' (1–4) and the report pages' (10).
extension ExamObjects.Series {
    public static let resultsReport = ExamObjects.Series(number: 11, description: "Bone densitometry results (SR)", bodyPart: nil, laterality: nil)
    public static let doseReport = ExamObjects.Series(number: 12, description: "Radiation dose (SR)", bodyPart: nil, laterality: nil)
    public static let rejections = ExamObjects.Series(number: 13, description: "Rejected objects (KO)", bodyPart: nil, laterality: nil)
}

extension ExamObjects {
    /// A revision's rejection note (IHE IOCM, PS3.3 A.35.4 Key Object Selection Document on
    /// TID 2010, titled 113001 "Rejected for Quality Reasons"): every object of earlier
    /// revisions the PACS was sent, which this revision replaces, so that a PACS that honours
    /// it hides them and a reader sees one version of the results. `rejected`: those objects
    /// with the series each belongs to (by name, `series(ofObjectNamed:)`).
    public func rejectionNote(rejected: [PerformedObject], created: Date) -> DicomObject? {
        let references = rejected.compactMap { o in series(ofObjectNamed: o.name).map { (o, $0) } }
        guard !references.isEmpty else { return nil }
        let noteSeries = Series.rejections
        let instance = instanceUID(noteSeries, 1)
        var ds = common(sopClass: SOPClass.keyObjectSelection, instance: instance, created: created)
        // Key Object Document Series
        ds.set(.modality, "KO")
        ds.set(.seriesInstanceUID, seriesInstanceUID(noteSeries))
        ds.set(.seriesNumber, noteSeries.number)
        ds.set(.seriesDescription, noteSeries.description)
        ds.set(.referencedPerformedProcedureStepSequence, items: performedStepReference)
        // Key Object Document
        ds.set(.instanceNumber, revision)
        let (date, time) = Self.dateTime(created)
        ds.set(.contentDate, date)
        ds.set(.contentTime, time)
        ds.set(.currentRequestedProcedureEvidenceSequence,
               items: [evidence(references.map { o, s in (seriesInstanceUID(s), o.sopClassUID, o.sopInstanceUID) })])
        // The content (TID 2010): why, then each rejected object.
        let why = SRItem(.contains, Codes.keyObjectDescription,
                         .text("Replaced by revision \(revision) of this exam's results, after a correction of its analysis"))
        let items = references.map { o, _ in
            o.sopClassUID == SOPClass.secondaryCapture
                ? SRItem(.contains, nil, .image(sopClass: o.sopClassUID, instance: o.sopInstanceUID))
                : SRItem(.contains, nil, .composite(sopClass: o.sopClassUID, instance: o.sopInstanceUID))
        }
        SRItem.container(nil, Codes.rejectedForQualityReasons, template: "2010", [why] + items).encode(into: &ds)
        if ds.needsUnicode { ds.set(.specificCharacterSet, "ISO_IR 192") }
        return DicomObject(name: "rejection", sopClassUID: SOPClass.keyObjectSelection, sopInstanceUID: instance, dataset: ds)
    }
}

extension ExamObjects {
    /// Every object of the exam: the images (`images(scans:)`), then the results report that
    /// refers to them, then the dose report.
    public func all(scans: [String: DecomposedScan], created: Date) throws(DicomFailure) -> [DicomObject] {
        let images = try images(scans: scans, created: created)
        return images + [resultsReport(images: images, created: created), doseReport(created: created)]
    }

    /// The device that made the measurements: the observer of both reports.
    var deviceObserver: [SRItem] {
        [SRItem(.hasObsContext, Codes.observerType, .code(Codes.device)),
         SRItem(.hasObsContext, Codes.deviceObserverUID, .uidref(uids.uid(exam: "device-observer"))),
         SRItem(.hasObsContext, Codes.deviceObserverName, .text(station.stationName)),
         SRItem(.hasObsContext, Codes.deviceObserverManufacturer, .text(station.manufacturer)),
         SRItem(.hasObsContext, Codes.deviceObserverModelName, .text(station.modelName)),
         SRItem(.hasObsContext, Codes.deviceObserverSerialNumber, .text(serialNumber))]
    }

    /// The device's serial number; "unknown" when no scan said it (type 1 in the dose report).
    var serialNumber: String { station.deviceSerialNumber.isEmpty ? "unknown" : station.deviceSerialNumber }

    /// The results as a Comprehensive SR on TID 1500 (Measurement Report): the device as
    /// observer, the sites' images in the image library, one measurement group (TID 1501) per
    /// region of interest with BMD, BMC, area, T- and Z-score, and the classification, the VFA
    /// reading and the QC state as qualitative evaluations. Numbers as the report prints
    /// them. `images`: the site images it refers to (from `images(scans:)`).
    public func resultsReport(images: [DicomObject], created: Date) -> DicomObject {
        let series = Series.resultsReport
        let instance = instanceUID(series, 1)
        var library: [SRItem] = []
        for o in images where o.name.hasPrefix("image-") {
            library.append(.container(.contains, Codes.imageLibraryGroup, [SRItem(.contains, nil, .image(sopClass: o.sopClassUID, instance: o.sopInstanceUID))]))
        }
        var groups: [SRItem] = []
        var notes: [SRItem] = []
        for s in results.sites {
            guard let site = Site(rawValue: s.site) else { continue }
            guard let r = s.result else {
                notes.append(SRItem(.contains, Codes.comment, .text("\(s.title): no result (\(s.note ?? s.status))")))
                continue
            }
            for roi in r.rois { groups.append(group(site, roi, title: s.title)) }
            if let vfa = r.vfa { notes.append(SRItem(.contains, Codes.vfa, .text(vfa.summary))) }
        }
        var evaluations: [SRItem] = []
        let d = results.diagnosis
        var words = d.words
        if let t = d.tScore, let roi = d.roi, let site = d.site.flatMap(Site.init(rawValue:)) {
            words += String(format: " (lowest T-score %.1f at the %@ %@)", t, site.title, roi)
        }
        evaluations.append(SRItem(.contains, Codes.diagnosis, .text(words + " [\(d.basis)]")))
        if let note = d.note { evaluations.append(SRItem(.contains, Codes.comment, .text(note))) }
        evaluations += notes
        for q in results.qualityControl { evaluations.append(SRItem(.contains, Codes.qualityControl, .text(q))) }
        if results.state != .completed {
            evaluations.append(SRItem(.contains, Codes.comment, .text("the exam was \(results.state.rawValue)\(results.abortReason.map { ": \($0)" } ?? "")")))
        }
        let root = SRItem.container(nil, Codes.imagingMeasurementReport, template: "1500", [
            SRItem(.hasConceptMod, Codes.language, .code(Codes.english)),
        ] + deviceObserver + [
            SRItem(.hasConceptMod, Codes.procedureReported, .code(Codes.dxa)),
        ]
            // TID 1600 and 1501 are 1-n: an exam aborted before any image has no library and no
            // measurement group, and says so in its evaluations.
            + (library.isEmpty ? [] : [.container(.contains, Codes.imageLibrary, library)])
            + (groups.isEmpty ? [] : [.container(.contains, Codes.imagingMeasurements, groups)])
            + [.container(.contains, Codes.qualitativeEvaluations, evaluations)])
        var ds = srDocument(sopClass: SOPClass.comprehensiveSR, series: series, instance: instance, created: created, references: images,
                            complete: results.state == .completed)
        root.encode(into: &ds)
        if ds.needsUnicode { ds.set(.specificCharacterSet, "ISO_IR 192") }
        return DicomObject(name: "results-sr", sopClassUID: SOPClass.comprehensiveSR, sopInstanceUID: instance, dataset: ds)
    }

    /// One region's measurement group (TID 1501): what it is, where, and its numbers.
    func group(_ site: Site, _ roi: ClinicalROI, title: String) -> SRItem {
        let (anatomy, side) = Codes.region(site)
        // A vertebra's own code; a hip's region other than the total hip is in the proximal femur.
        let place: Code
        if site == .apSpine { place = Codes.vertebrae[roi.name] ?? anatomy } else if anatomy == Codes.hip && roi.name != "total_hip" { place = Codes.proximalFemur } else { place = anatomy }
        var findingSite = SRItem(.hasConceptMod, Codes.findingSite, .code(place))
        if let side { findingSite.children = [SRItem(.hasConceptMod, Codes.laterality, .code(side))] }
        let spineTotal = site == .apSpine && roi.name == "L1-L4"
        var items: [SRItem] = [
            SRItem(.hasObsContext, Codes.trackingIdentifier, .text("\(title) \(roi.name)")),
            SRItem(.hasObsContext, Codes.trackingUniqueIdentifier, .uidref(uids.uid(exam: examKey, [UIDPath.trackedRegion, site.index, roiIndex(roi.name)]))),
            findingSite,
        ]
        if let bmd = roi.bmdGCm2 {
            let concept = spineTotal ? Codes.spineBMD : site == .leftHip && roi.name == "total_hip" ? Codes.leftHipBMD : Codes.bmd
            items.append(SRItem(.contains, concept, .num(String(format: "%.3f", bmd), unit: Unit.gramsPerSquareCentimetre)))
        }
        // A region without a BMD (no vertebra left to measure) has no BMC or area either.
        if roi.bmdGCm2 != nil {
            items.append(SRItem(.contains, Codes.bmc, .num(String(format: "%.2f", roi.bmcG), unit: Unit.grams)))
            items.append(SRItem(.contains, Codes.boneArea, .num(String(format: "%.2f", roi.areaCm2), unit: Unit.squareCentimetres)))
        }
        if let t = roi.tScore {
            let concept = spineTotal ? Codes.spineT : (site == .leftHip || site == .rightHip) && roi.name == "total_hip" ? Codes.hipT : Codes.tScore
            items.append(SRItem(.contains, concept, .num(String(format: "%.1f", t), unit: Unit.noUnits)))
        }
        if let z = roi.zScore {
            items.append(SRItem(.contains, spineTotal ? Codes.spineZ : Codes.zScore, .num(String(format: "%.1f", z), unit: Unit.noUnits)))
        }
        var remarks: [String] = []
        if let used = roi.vertebraeUsed { remarks.append("over \(used.joined(separator: ", "))") }
        if roi.excluded { remarks.append("excluded\(roi.reason.map { ": \($0)" } ?? "")") }
        if !roi.complete { remarks.append("lines missing in this region") }
        if !roi.forDiagnosis { remarks.append("not used for diagnosis") }
        if !remarks.isEmpty { items.append(SRItem(.contains, Codes.comment, .text(remarks.joined(separator: "; ")))) }
        return .container(.contains, Codes.measurementGroup, template: "1501", items)
    }

    func roiIndex(_ name: String) -> Int {
        ["L1", "L2", "L3", "L4", "L1-L4", "neck", "trochanter", "intertrochanter", "total_hip", "wards"].firstIndex(of: name).map { $0 + 1 } ?? 99
    }

    /// The X-Ray Radiation Dose SR (TID 10001, projection X-ray): the study's accumulated dose
    /// (DAP and acquisition time, TID 10002/10007) and one irradiation event (TID 10003) per
    /// attempt that exposed, rejected and aborted ones included.
    public func doseReport(created: Date) -> DicomObject {
        let series = Series.doseReport
        let instance = instanceUID(series, 1)
        let events = results.exposures.isEmpty
            ? results.sites.compactMap { s in s.dose.flatMap { $0.scans > 0 ? ExamResults.Exposure(site: s.site, attempt: s.attempt ?? 1, status: s.status,
                                                                                                        startedAt: nil, endedAt: nil, dose: $0) : nil } }
            : results.exposures
        let total = ScanDose.total(events.map(\.dose))
        var items: [SRItem] = [
            SRItem(.hasConceptMod, Codes.procedureReported, .code(Codes.projectionXRay), [SRItem(.hasConceptMod, Codes.hasIntent, .code(Codes.diagnosticIntent))]),
            SRItem(.contains, Codes.acquisitionDeviceType, .code(Codes.integratedProjectionSystem)),
        ] + deviceObserver + [
            SRItem(.hasObsContext, Codes.scopeOfAccumulation, .code(Codes.study), [SRItem(.hasProperties, Codes.studyInstanceUID, .uidref(studyInstanceUID))]),
            SRItem(.contains, Codes.detectorDataAvailable, .code(Codes.no)),
            SRItem(.contains, Codes.sourceDataAvailable, .code(Codes.yes)),
            SRItem(.contains, Codes.mechanicalDataAvailable, .code(Codes.no)),
            .container(.contains, Codes.accumulatedDose, [
                SRItem(.hasConceptMod, Codes.acquisitionPlane, .code(Codes.singlePlane)),
                SRItem(.contains, Codes.dapTotal, .num(Self.gyM2(total.dapMGyCm2), unit: Unit.grayMetreSquared)),
                SRItem(.contains, Codes.totalAcquisitionTime, .num(String(format: "%.1f", Double(total.exposureMs) / 1000), unit: Unit.seconds)),
            ]),
        ]
        for (k, e) in events.enumerated() {
            let site = Site(rawValue: e.site)
            var target = SRItem(.contains, Codes.targetRegion, .code(site.map { Codes.region($0).0 } ?? Codes.lumbarSpine))
            if let side = site.flatMap({ Codes.region($0).1 }) { target.children = [SRItem(.hasConceptMod, Codes.laterality, .code(side))] }
            var event: [SRItem] = [
                SRItem(.hasConceptMod, Codes.acquisitionPlane, .code(Codes.singlePlane)),
                SRItem(.contains, Codes.irradiationEventUID, .uidref(uids.uid(exam: examKey, [UIDPath.irradiationEvent, k + 1]))),
            ]
            // DateTime Started is mandatory (TID 10003): the attempt's start, else (results kept
            // before attempts' times were) the exam's.
            if let started = (e.startedAt ?? results.startedAt ?? results.createdAt).flatMap({ ISO8601DateFormatter().date(from: $0) }) {
                event.append(SRItem(.contains, Codes.dateTimeStarted, .datetime(Self.dicomDateTime(started))))
            }
            event += [
                SRItem(.contains, Codes.irradiationEventType, .code(Codes.steppingAcquisition)),
                SRItem(.contains, Codes.acquisitionProtocol, .text("\(site?.title ?? e.site), attempt \(e.attempt)")),
                target,
                SRItem(.contains, Codes.dap, .num(Self.gyM2(e.dose.dapMGyCm2), unit: Unit.grayMetreSquared)),
                SRItem(.contains, Codes.exposureTime, .num(String(e.dose.exposureMs), unit: Unit.milliseconds)),
            ]
            if let ua = e.tubeCurrentUA { event.append(SRItem(.contains, Codes.tubeCurrent, .num(String(format: "%.3f", Double(ua) / 1000), unit: Unit.milliamperes))) }
            var comment = "\(e.dose.scans) exposures (references, scout and scan); \(e.status)"
            if e.dose.estimated { comment += "; dose estimated by the host from the tube current and exposure time (the unit reported none)" }
            event.append(SRItem(.contains, Codes.comment, .text(comment)))
            items.append(.container(.contains, Codes.irradiationEvent, event))
        }
        items.append(SRItem(.contains, Codes.sourceOfDoseInformation, .code(Codes.automatedDataCollection)))
        if total.estimated { items.append(SRItem(.contains, Codes.sourceOfDoseInformation, .code(Codes.systemCalculated))) }
        let root = SRItem.container(nil, Codes.doseReport, template: "10001", items)
        var ds = srDocument(sopClass: SOPClass.xRayRadiationDoseSR, series: series, instance: instance, created: created, references: [],
                            complete: true)
        root.encode(into: &ds)
        if ds.needsUnicode { ds.set(.specificCharacterSet, "ISO_IR 192") }
        return DicomObject(name: "dose-sr", sopClassUID: SOPClass.xRayRadiationDoseSR, sopInstanceUID: instance, dataset: ds)
    }

    /// mGy·cm² as Gy·m² (× 10⁻⁷), in DS's 16 characters.
    static func gyM2(_ mGyCm2: Double) -> String { String(format: "%.4E", mGyCm2 * 1e-7) }

    /// A DICOM DT in the station's time zone, as every date and time of the object (Timezone
    /// Offset From UTC says which; DCMTK 3.6.7's SR reader refuses a DT with its own offset).
    static func dicomDateTime(_ date: Date) -> String {
        let (d, t) = dateTime(date)
        return d + t
    }

    /// The SR document's header (PS3.3 A.35): patient, study, SR Document Series (Modality
    /// SR), the equipment (Enhanced General Equipment for the dose report), SR Document
    /// General with the order it answers and the images it refers to.
    func srDocument(sopClass: String, series: Series, instance: String, created: Date, references: [DicomObject], complete: Bool) -> DicomDataset {
        var ds = common(sopClass: sopClass, instance: instance, created: created)
        ds.set(.modality, "SR")
        ds.set(.seriesInstanceUID, seriesInstanceUID(series))
        ds.set(.seriesNumber, series.number)
        ds.set(.seriesDescription, series.description)
        // Type 2: the step the RIS was told of, or empty.
        ds.set(.referencedPerformedProcedureStepSequence, items: performedStepReference)
        ds.set(.deviceSerialNumber, serialNumber)
        ds.set(.instanceNumber, (revision - 1) * 100 + 1)
        ds.set(.completionFlag, complete ? "COMPLETE" : "PARTIAL")
        ds.set(.verificationFlag, "UNVERIFIED")
        let (date, time) = Self.dateTime(created)
        ds.set(.contentDate, date)
        ds.set(.contentTime, time)
        ds.set(.performedProcedureCodeSequence, items: [Codes.dxa.item])
        if study.accessionNumber != nil || study.requestedProcedureID != nil || study.studyInstanceUID != nil {
            var request = DicomDataset()
            request.set(.studyInstanceUID, studyInstanceUID)
            request.set(.referencedStudySequence, items: [])
            request.set(.accessionNumber, study.accessionNumber)
            request.set(.placerOrderNumberImagingServiceRequest, nil)
            request.set(.fillerOrderNumberImagingServiceRequest, nil)
            request.set(.requestedProcedureID, study.requestedProcedureID)
            request.set(.requestedProcedureDescription, study.requestedProcedureDescription)
            request.set(.requestedProcedureCodeSequence, items: [])
            ds.set(.referencedRequestSequence, items: [request])
        }
        if !references.isEmpty {
            let refs = references.compactMap { o in o.dataset.text(.seriesInstanceUID).map { ($0, o.sopClassUID, o.sopInstanceUID) } }
            ds.set(.currentRequestedProcedureEvidenceSequence, items: [evidence(refs)])
        }
        if sopClass == SOPClass.comprehensiveSR {
            // The product's own codes, declared (PS3.3 C.12.1.1.2.1).
            var scheme = DicomDataset()
            scheme.set(.codingSchemeDesignator, Codes.privateScheme)
            scheme.set(.codingSchemeName, "DX-1 bone densitometry measurements")
            scheme.set(.codingSchemeResponsibleOrganization, station.manufacturer)
            ds.set(.codingSchemeIdentificationSequence, items: [scheme])
        }
        return ds
    }
}

extension ExamObjects {
    /// A Current Requested Procedure Evidence Sequence item: the study, its series in the
    /// order first named, each with the instances referenced in it.
    func evidence(_ references: [(seriesUID: String, sopClass: String, instance: String)]) -> DicomDataset {
        var bySeries: [(uid: String, items: [DicomDataset])] = []
        for r in references {
            var ref = DicomDataset()
            ref.set(.referencedSOPClassUID, r.sopClass)
            ref.set(.referencedSOPInstanceUID, r.instance)
            if let i = bySeries.firstIndex(where: { $0.uid == r.seriesUID }) { bySeries[i].items.append(ref) } else { bySeries.append((r.seriesUID, [ref])) }
        }
        var evidence = DicomDataset()
        evidence.set(.studyInstanceUID, studyInstanceUID)
        evidence.set(.referencedSeriesSequence, items: bySeries.map { s in
            var item = DicomDataset()
            item.set(.seriesInstanceUID, s.uid)
            item.set(.referencedSOPSequence, items: s.items)
            return item
        })
        return evidence
    }
}

/// The first component of the UID paths that are not a series's (series numbers are 1–12):
/// each kind of thing named has its own, so that no two things share a UID.
enum UIDPath {
    static let performedProcedureStep = 90
    static let irradiationEvent = 91
    static let trackedRegion = 92
}

extension Site {
    /// The site's place in the protocol (1–4), for UIDs.
    var index: Int { (Site.allCases.firstIndex(of: self) ?? 0) + 1 }
}

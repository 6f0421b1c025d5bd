import DXAcquisition
@testable import DXDicom
import DXReport
import DXTestSupport
import Foundation
import Testing

/// The exam's objects from a real analysis (ExampleExam), checked by tools we did not write:
/// dciodvfy (dicom3tools) for each object's conformance, DCMTK for reading them back.
@Suite("Exam objects")
struct ExamObjectsTests {
    static let station = DicomStation(aeTitle: "DEXA1", stationName: "DX1-TEST", institutionName: "Test Hospital", deviceSerialNumber: "DX1-000123",
                                      softwareVersions: "dexa test")

    /// The example's analyses, made once for the suites that use them (they take seconds).
    static let example = Result { try ExampleExam.results() }

    static func objects(study: DicomStudy = DicomStudy(), root: String? = nil) throws -> (ExamObjects, [DicomObject], [String: RGBImage]) {
        var (r, scans) = try example.get()
        r.createdAt = "2026-12-04T08:58:00Z"
        r.startedAt = "2026-12-04T09:00:00Z"
        let exam = ExamObjects(results: r, station: station, study: study, uids: UIDGenerator(root: root, station: station.deviceSerialNumber))
        var images: [String: RGBImage] = [:]
        for site in r.sites { if let scan = scans[site.site], let image = try ReportRaster.site(site, scan: scan) { images[site.site] = image } }
        return (exam, try exam.images(scans: scans, created: Date(timeIntervalSince1970: 1_796_374_800)), images)
    }

    @Test func eachSiteAndEachPageIsAnImageOfOneStudy() throws {
        let (exam, objects, images) = try Self.objects()
        // The example: spine, left hip, lateral spine (the right hip was not scanned), and a
        // report of two pages.
        #expect(objects.map(\.name) == ["image-ap_spine", "image-left_hip", "image-lateral_spine", "report-1", "report-2"])
        #expect(Set(objects.map(\.sopInstanceUID)).count == objects.count)
        for o in objects {
            let ds = o.dataset
            #expect(ds.text(.studyInstanceUID) == exam.studyInstanceUID)
            #expect(ds.text(.patientID) == "P-0042")
            #expect(ds.text(.patientName) == "Example^Ada")
            #expect(ds.text(.patientBirthDate) == "19590701")
            #expect(ds.text(.patientSex) == "F")
            #expect(ds.text(.modality) == "BMD")
            #expect(ds.text(.studyID) == "7")
            #expect(ds[.accessionNumber] == .empty, "typed in: no accession number")
            #expect(ds.text(.sopInstanceUID) == o.sopInstanceUID)
            #expect(ds.text(.sopClassUID) == SOPClass.secondaryCapture)
        }
        #expect(objects[1].dataset.text(.laterality) == "L")
        #expect(objects[1].dataset.text(.bodyPartExamined) == "HIP")
        #expect(objects[0].dataset[.laterality] == nil, "the spine is not paired: no laterality")
        #expect(objects.map { $0.dataset.text(.seriesNumber) } == ["1", "2", "4", "10", "10"])
        // The spine's pixels are the report's drawing of it.
        let spine = try #require(images["ap_spine"])
        #expect(objects[0].dataset.text(.rows) == String(spine.rows))
        #expect(objects[0].dataset.text(.columns) == String(spine.columns))
        #expect(objects[0].dataset[.pixelData] == .bytes(spine.pixels.count % 2 == 0 ? spine.pixels : spine.pixels + [0], words: false))
    }

    @Test func theWorklistsIdentifiersAreCarriedUnchanged() throws {
        let study = DicomStudy(studyInstanceUID: "1.2.826.0.1.3680043.10.9.77", accessionNumber: "ACC-2026-0007",
                               referringPhysicianName: "Referrer^Rita", requestedProcedureDescription: "DXA spine and hips",
                               patientName: "Example^Ada^^Mrs")
        let (_, objects, _) = try Self.objects(study: study, root: "1.2.826.0.1.3680043.10.9")
        for o in objects {
            #expect(o.dataset.text(.studyInstanceUID) == "1.2.826.0.1.3680043.10.9.77")
            #expect(o.dataset.text(.accessionNumber) == "ACC-2026-0007")
            #expect(o.dataset.text(.referringPhysicianName) == "Referrer^Rita")
            #expect(o.dataset.text(.patientName) == "Example^Ada^^Mrs")
            #expect(o.dataset.text(.studyDescription) == "DXA spine and hips")
            #expect(o.sopInstanceUID.hasPrefix("1.2.826.0.1.3680043.10.9."))
        }
    }

    @Test func theSameExamMakesTheSameUIDsAgain() throws {
        let (_, a, _) = try Self.objects()
        let (_, b, _) = try Self.objects()
        #expect(a.map(\.sopInstanceUID) == b.map(\.sopInstanceUID))
    }

    /// Every object written, read back by DCMTK with the same attributes, and checked by
    /// dciodvfy: no errors. The warnings it gives are listed in docs/dicom-conformance.md.
    @Test(.enabled(if: DicomTools.available)) func everyObjectPassesDciodvfy() throws {
        let (_, objects, _) = try Self.objects()
        let dir = TemporaryDirectory("dxdcm")
        var warnings = Set<String>()
        for o in objects {
            let path = dir.file(o.name + ".dcm")
            try DicomFile.write(o.dataset, to: path)
            let back = try DicomFile.read(path)
            for tag in o.dataset.tags where tag != .pixelData {
                #expect(back[tag] == o.dataset[tag], "\(o.name) \(tag)")
            }
            let (errors, w) = try DicomTools.verify(path)
            #expect(errors.isEmpty, "\(o.name): \(errors.joined(separator: "; "))")
            warnings.formUnion(w)
        }
        if let out = ProcessInfo.processInfo.environment["DEXA_DICOM_EXAMPLE"] {
            try? FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            for o in objects { try DicomFile.write(o.dataset, to: out + "/" + o.name + ".dcm") }
            try warnings.sorted().joined(separator: "\n").write(toFile: out + "/dciodvfy-warnings.txt", atomically: true, encoding: .utf8)
        }
    }

    // MARK: The results and dose reports

    /// dsrdump's warnings and errors, but for its note that its VR checker cannot check
    /// UTF-8 text (ISO_IR 192, which the reports use for the words of the VFA reading).
    static func complaints(_ dump: String) -> [String] {
        dump.split(separator: "\n").map(String.init).filter { ($0.hasPrefix("W:") || $0.hasPrefix("E:") || $0.hasPrefix("F:")) && !$0.contains("does not support this Specific Character Set") }
    }

    /// The results report read by dsrdump (DCMTK's SR reader, which checks the content tree
    /// against the Comprehensive SR IOD's relationship constraints): each region's BMD, T- and
    /// Z-score as the report page prints them, coded as docs/dicom-conformance.md says.
    @Test(.enabled(if: DicomTools.available)) func theResultsReportReadsAsTheReportsNumbers() throws {
        let (exam, images, _) = try Self.objects()
        let sr = exam.resultsReport(images: images, created: Date(timeIntervalSince1970: 1_796_374_800))
        let dir = TemporaryDirectory("dxsr")
        let path = dir.file("results.dcm")
        try DicomFile.write(sr.dataset, to: path)
        let (status, dump) = try DicomTools.run(DicomTools.dsrdump, ["+Pc", "+Pl", "+Pu", path])
        #expect(status == 0, "\(dump)")
        #expect(Self.complaints(dump).isEmpty, "\(Self.complaints(dump))")
        #expect(dump.contains("Comprehensive SR Document"))
        #expect(dump.contains("(126000,DCM,\"Imaging Measurement Report\")"))
        // Every number the report page prints for a region, found in its measurement group.
        let groups = dump.components(separatedBy: "(125007,DCM,\"Measurement Group\")").dropFirst()
        var checked = 0
        for site in exam.results.sites {
            guard let r = site.result else { continue }
            for roi in r.rois {
                let matching = groups.filter { $0.contains("=\"\(site.title) \(roi.name)\"") }
                #expect(matching.count == 1, "\(site.title) \(roi.name)")
                guard let g = matching.first else { continue }
                if let bmd = roi.bmdGCm2 { #expect(g.contains("=\"\(String(format: "%.3f", bmd))\" (g/cm2,UCUM"), "\(site.title) \(roi.name) BMD"); checked += 1 }
                if let t = roi.tScore {
                    let v = String(format: "%.1f", t)
                    #expect(g.contains("T-score] Bone density\")=\"\(v)\"") || g.contains("\"T-score\")=\"\(v)\""), "\(roi.name) T"); checked += 1
                }
                if let z = roi.zScore {
                    let v = String(format: "%.1f", z)
                    #expect(g.contains("Z-score] Bone density\")=\"\(v)\"") || g.contains("\"Z-score\")=\"\(v)\""), "\(roi.name) Z"); checked += 1
                }
            }
        }
        #expect(checked >= 15, "the example: L1–L4 and L1-L4, five hip regions, each with a BMD, and T-scores where the reference has one")
        // The spine's total under LOINC; the diagnosis in words; the images it refers to.
        #expect(dump.contains("(24966-4,LN,\"DXA Lumbar spine [Mass/Area] Bone density\")"))
        #expect(dump.contains("(38267-1,LN,"))
        #expect(dump.contains(exam.results.diagnosis.words))
        for o in images where o.name.hasPrefix("image-") { #expect(dump.contains(o.sopInstanceUID), "\(o.name) in the image library") }
        if let vfa = exam.results.sites.first(where: { $0.site == "lateral_spine" })?.result?.vfa { #expect(dump.contains(vfa.summary)) }
    }

    /// The dose report: the study's DAP in Gy·m² (mGy·cm² × 10⁻⁷) and one irradiation event
    /// per exposing attempt with its DAP and exposure time; read by dsrdump.
    @Test(.enabled(if: DicomTools.available)) func theDoseReportCarriesEachScansDAP() throws {
        var (exam, _, _) = try Self.objects()
        exam.results.exposures = [
            .init(site: "ap_spine", attempt: 1, status: "completed", startedAt: "2026-12-04T09:01:00Z", endedAt: "2026-12-04T09:05:00Z",
                  dose: ScanDose(scans: 5, exposureMs: 221_700, dapMGyCm2: 6.41), tubeCurrentUA: 400),
            .init(site: "left_hip", attempt: 1, status: "motion", startedAt: "2026-12-04T09:07:00Z", endedAt: "2026-12-04T09:08:00Z",
                  dose: ScanDose(scans: 2, exposureMs: 40_000, dapMGyCm2: 0.5, estimated: true), tubeCurrentUA: 333),
            .init(site: "left_hip", attempt: 2, status: "completed", startedAt: "2026-12-04T09:09:00Z", endedAt: "2026-12-04T09:12:00Z",
                  dose: ScanDose(scans: 5, exposureMs: 181_940, dapMGyCm2: 2.24), tubeCurrentUA: 333),
        ]
        let sr = exam.doseReport(created: Date(timeIntervalSince1970: 1_796_374_800))
        let dir = TemporaryDirectory("dxsr")
        let path = dir.file("dose.dcm")
        try DicomFile.write(sr.dataset, to: path)
        let (status, dump) = try DicomTools.run(DicomTools.dsrdump, ["+Pc", "+Pl", path])
        #expect(status == 0, "\(dump)")
        #expect(Self.complaints(dump).isEmpty, "\(Self.complaints(dump))")
        #expect(dump.contains("X-Ray Radiation Dose SR Document"))
        #expect(dump.contains("(113722,DCM,\"Dose Area Product Total\")=\"9.1500E-07\" (Gy.m2,UCUM"), "6.41 + 0.5 + 2.24 mGy·cm²")
        #expect(dump.contains("(113855,DCM,\"Total Acquisition Time\")=\"443.6\" (s,UCUM"))
        #expect(dump.components(separatedBy: "(113706,DCM,\"Irradiation Event X-Ray Data\")").count - 1 == 3)
        #expect(dump.contains("(122130,DCM,\"Dose Area Product\")=\"6.4100E-07\""))
        #expect(dump.contains("(113824,DCM,\"Exposure Time\")=\"40000\" (ms,UCUM"))
        #expect(dump.contains("(111526,DCM,\"DateTime Started\")"))
        #expect(dump.contains("(113940,DCM,\"System Calculated\")"), "an estimated dose says so")
        #expect(dump.contains(exam.studyInstanceUID))
        let (errors, _) = try DicomTools.verify(path)
        #expect(errors.isEmpty, "\(errors)")
    }

    /// Both reports pass dciodvfy; every object of the exam belongs to the same study.
    @Test(.enabled(if: DicomTools.available)) func theReportsPassDciodvfy() throws {
        let (exam, images, _) = try Self.objects()
        let dir = TemporaryDirectory("dxsr")
        for o in [exam.resultsReport(images: images, created: Date()), exam.doseReport(created: Date())] {
            let path = dir.file(o.name + ".dcm")
            try DicomFile.write(o.dataset, to: path)
            let (errors, warnings) = try DicomTools.verify(path)
            #expect(errors.isEmpty, "\(o.name): \(errors.joined(separator: "; "))")
            #expect(o.dataset.text(.studyInstanceUID) == exam.studyInstanceUID)
            #expect(o.dataset.text(.modality) == "SR")
            // The only warnings: the product's declared coding scheme, which dciodvfy does not know.
            #expect(warnings.allSatisfy { $0.contains("<99DXA>") }, "\(o.name): \(warnings)")
            if o.name == "dose-sr" { #expect(warnings.isEmpty) }
            if let out = ProcessInfo.processInfo.environment["DEXA_DICOM_EXAMPLE"] {
                try? FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                try DicomFile.write(o.dataset, to: out + "/" + o.name + ".dcm")
                try warnings.sorted().joined(separator: "\n").write(toFile: out + "/dciodvfy-warnings-\(o.name).txt", atomically: true, encoding: .utf8)
            }
        }
    }

    /// No two things share a UID: within a revision every object, series, tracked region,
    /// irradiation event and the procedure step differ; a revision's objects are new
    /// instances while its series, regions and events are the same things as before.
    @Test func noTwoThingsShareAUID() throws {
        let (base, _, _) = try Self.objects()
        let scans = try Self.example.get().1
        func uidrefs(_ ds: DicomDataset) -> [String] {
            ds.attributes.flatMap { tag, value -> [String] in
                switch value {
                case .sequence(let items): return items.flatMap(uidrefs)
                case .text(let t) where tag == .uid: return [t]
                default: return []
                }
            }
        }
        var instances: [String] = []
        var things: Set<String> = []
        for revision in 1...3 {
            var exam = base
            exam.revision = revision
            exam.results.exposures = (1...4).map { k in
                .init(site: "ap_spine", attempt: k, status: "completed", startedAt: "2026-12-04T09:0\(k):00Z", endedAt: nil,
                      dose: ScanDose(scans: 1, exposureMs: 1000, dapMGyCm2: 1))
            }
            let images = try exam.images(scans: scans, created: Date(timeIntervalSince1970: 1_796_374_800))
            let all = images + [exam.resultsReport(images: images, created: Date()), exam.doseReport(created: Date())]
            let regionsAndEvents = Set(all.flatMap { uidrefs($0.dataset) }).subtracting([exam.uids.uid(exam: "device-observer"), exam.studyInstanceUID])
            let rois = exam.results.sites.reduce(0) { $0 + ($1.result?.rois.count ?? 0) }
            #expect(regionsAndEvents.count == rois + 4, "revision \(revision): a UID per region and per event")
            let series = Set(all.compactMap { $0.dataset.text(.seriesInstanceUID) })
            let named: [Set<String>] = [regionsAndEvents, series, [exam.mppsInstanceUID], [exam.studyInstanceUID]]
            let union = named.reduce(Set<String>()) { $0.union($1) }
            #expect(named.reduce(0) { $0 + $1.count } == union.count, "revision \(revision): two kinds of thing share a UID")
            let objects = all.map(\.sopInstanceUID)
            #expect(Set(objects).count == objects.count)
            #expect(Set(objects).isDisjoint(with: union), "revision \(revision): an object shares a UID with a series, region, event or the step")
            instances += objects
            things.formUnion(union)
        }
        #expect(Set(instances).count == instances.count, "every revision's objects are new instances")
        #expect(Set(instances).isDisjoint(with: things))
    }
}

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
}

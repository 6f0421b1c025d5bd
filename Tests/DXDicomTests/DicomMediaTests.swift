@testable import DXDicom
import DXTestSupport
import Foundation
import Testing

/// An exam's objects as DICOM media (PS3.10 file IDs, a DICOMDIR by DCMTK).
@Suite("DICOM media")
struct DicomMediaTests {
    /// Every object an exam can have gets a file ID a media reader accepts, each its own.
    @Test func everyObjectHasAFileIDOfItsOwn() {
        let names = ["image-ap_spine", "image-left_hip", "image-right_hip", "image-lateral_spine"]
            + (1...12).map { "report-\($0)" } + ["results-sr", "dose-sr", "something-new", "another"]
        let ids = names.map { DicomMedia.fileID(forObjectNamed: $0, among: names) }
        #expect(Set(ids).count == names.count, "\(ids)")
        for id in ids { #expect(DicomMedia.isFileID(DicomMedia.examFolder(12) + "/" + id), "\(id)") }
        #expect(DicomMedia.examFolder(12) == "DICOM/EX000012")
        for bad in ["", "dicom/EX1", "DICOM//X", "DICOM/TOOLONGNAME", "DICOM/A.DCM", "A/B/C/D/E/F/G/H/I", "DICOM/ÉX"] {
            #expect(!DicomMedia.isFileID(bad), "\(bad)")
        }
    }

    /// The example exam's objects on a medium: a DICOMDIR with a record per object (patient,
    /// study, series above them) that dciodvfy finds no error in; a file ID that is not one
    /// is refused before DCMTK sees it.
    @Test(.enabled(if: DicomTools.available)) func theExampleExamMakesAReadableDICOMDIR() throws {
        let dir = TemporaryDirectory("dxmedia")
        let (exam, images, _) = try ExamObjectsTests.objects()
        let (_, scans) = try ExamObjectsTests.example.get()
        let objects = try exam.all(scans: scans, created: Date(timeIntervalSince1970: 1_796_374_800))
        #expect(objects.count > images.count, "the images, the pages and the two reports")
        let names = objects.map(\.name)
        try FileManager.default.createDirectory(atPath: dir.file(DicomMedia.examFolder(7)), withIntermediateDirectories: true)
        for o in objects {
            try DicomFile.write(o.dataset, to: dir.file(DicomMedia.examFolder(7) + "/" + DicomMedia.fileID(forObjectNamed: o.name, among: names)))
        }
        let files = DicomMedia.filesOnMedium(root: dir.path)
        #expect(files.count == objects.count)
        try DicomMedia.writeDirectory(root: dir.path, files: files)
        let (status, dump) = try DicomTools.run(DicomTools.dcmdump, [dir.file("DICOMDIR")])
        #expect(status == 0)
        for o in objects { #expect(dump.contains(o.sopInstanceUID), "\(o.name)") }
        for record in ["PATIENT", "STUDY", "SERIES", "IMAGE", "SR DOCUMENT"] { #expect(dump.contains("[\(record)"), "\(record) record") }
        let (errors, _) = try DicomTools.verify(dir.file("DICOMDIR"))
        #expect(errors.isEmpty, "\(errors)")
        #expect(throws: DicomFailure.self) { try DicomMedia.writeDirectory(root: dir.path, files: ["dicom/lower"]) }
    }
}

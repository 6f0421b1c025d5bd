@testable import DXDicom
import DXTestSupport
import Foundation
import Testing

@Suite("DICOM datasets, UIDs, names and dates")
struct DatasetTests {
    // MARK: UIDs

    /// A UID's form (PS3.5 §9.1): at most 64 characters, numbers without leading zeros
    /// separated by dots.
    static func isValidUID(_ uid: String) -> Bool {
        let parts = uid.split(separator: ".", omittingEmptySubsequences: false)
        return uid.count <= 64 && !parts.isEmpty
            && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } && ($0 == "0" || !$0.hasPrefix("0")) }
    }

    @Test func uuidDerivedUIDsAreValidStableAndVersionEight() throws {
        let g = UIDGenerator(root: nil, station: "DX1-000123")
        let study = g.uid(exam: "7@2026-12-04T09:00:00Z")
        #expect(study.hasPrefix("2.25."))
        #expect(Self.isValidUID(study))
        #expect(g.uid(exam: "7@2026-12-04T09:00:00Z") == study, "the same exam, the same UID")
        let others = [g.uid(exam: "7@2026-12-04T09:00:00Z", [1]), g.uid(exam: "7@2026-12-04T09:00:00Z", [1, 1]),
                      g.uid(exam: "7@2026-12-04T09:00:00Z", [1, 2]), g.uid(exam: "7@2026-12-05T09:00:00Z"),
                      UIDGenerator(root: nil, station: "DX1-000124").uid(exam: "7@2026-12-04T09:00:00Z")]
        #expect(Set(others + [study]).count == 6)
        for uid in others { #expect(Self.isValidUID(uid), "\(uid)") }
        // The UUID inside: version 8, variant 10 (RFC 9562).
        let value = try #require(UInt128(study.dropFirst(5)))
        #expect((value >> 76) & 0xF == 8)
        #expect((value >> 62) & 0x3 == 2)
    }

    @Test func rootedUIDsStayWithinSixtyFourCharacters() {
        let root = "1.2.826.0.1.3680043.10.9"  // 24 characters, the longest root accepted
        #expect(UIDGenerator.problem(root: root) == nil)
        let g = UIDGenerator(root: root, station: "DX1-000123")
        for exam in ["1@x", "999999999@2099-12-31T23:59:59Z", "42@2026-12-04"] {
            for path in [[], [1], [2, 999], [999, 999]] {
                let uid = g.uid(exam: exam, path)
                #expect(uid.hasPrefix(root + "."))
                #expect(Self.isValidUID(uid), "\(uid) (\(uid.count))")
            }
        }
    }

    @Test(arguments: ["", "1..2", "1.02.3", "a.b", "1.2.", ".1.2", "1.2.826.0.1.3680043.10.9999", "1.2 3", "１.２"])
    func aBadUIDRootIsRefusedWithItsReason(_ root: String) {
        #expect(UIDGenerator.problem(root: root) != nil, "\(root)")
    }

    // MARK: Names, dates, AE titles

    @Test func personNamesBothWays() {
        #expect(PersonName.display("Example^Ada") == "Ada Example")
        #expect(PersonName.display("Vivaldi^Antonio^Lucio^Dr.^") == "Dr. Antonio Lucio Vivaldi")
        #expect(PersonName.display("Yamada^Tarou=山田^太郎") == "Tarou Yamada")
        #expect(PersonName.display("") == "")
        #expect(PersonName.dicom("Example, Ada") == "Example^Ada")
        #expect(PersonName.dicom("Example^Ada") == "Example^Ada")
        #expect(PersonName.dicom("Ada Example") == "Example^Ada")
        #expect(PersonName.dicom("  Ada   Maria Example ") == "Example^Ada Maria")
        #expect(PersonName.dicom("Cher") == "Cher")
    }

    @Test func datesBothWays() {
        #expect(DicomDate.iso("19560314") == "1956-03-14")
        #expect(DicomDate.da("1956-03-14") == "19560314")
        for bad in ["", "1956031", "19561314", "1956-03-14", "abcdefgh", "19560100", "１９５６０３１４"] { #expect(DicomDate.iso(bad) == nil, "\(bad)") }
        for bad in ["", "14.03.1956", "1956-3-14", "1956-13-01"] { #expect(DicomDate.da(bad) == nil, "\(bad)") }
    }

    @Test func aeTitles() {
        #expect(AETitle.problem("DEXA1") == nil)
        for bad in ["", "                ", "SEVENTEEN_CHARSXX", "BACK\\SLASH", "TAB\t", "ÜBER"] { #expect(AETitle.problem(bad) != nil, "\(bad)") }
    }

    // MARK: Datasets through DCMTK

    @Test func aDatasetRoundTripsThroughAPart10File() throws {
        let dir = TemporaryDirectory("dxdcm")
        var step = DicomDataset()
        step.set(.modality, "BMD")
        step.set(.scheduledProcedureStepID, "SPS-1")
        var ds = DicomDataset()
        ds.set(.sopClassUID, SOPClass.secondaryCapture)
        ds.set(.sopInstanceUID, "2.25.1234")
        ds.set(.specificCharacterSet, "ISO_IR 192")
        ds.set(.patientName, "Müller^Zoë")
        ds.set(.patientID, "P-1")
        ds.set(.referringPhysicianName, nil)
        ds.set(.rows, 2)
        ds.set(.imageType, "DERIVED\\SECONDARY")
        ds.set(.scheduledProcedureStepSequence, items: [step, step])
        ds[.pixelData] = .bytes([1, 2, 3, 4, 5, 6], words: false)
        let path = dir.file("a.dcm")
        try DicomFile.write(ds, to: path)
        let back = try DicomFile.read(path)
        #expect(back.text(.patientName) == "Müller^Zoë")
        #expect(back.text(.patientID) == "P-1")
        #expect(back[.referringPhysicianName] == .empty)
        #expect(back.text(.rows) == "2")
        #expect(back.text(.imageType) == "DERIVED\\SECONDARY")
        #expect(back.items(.scheduledProcedureStepSequence).count == 2)
        #expect(back.items(.scheduledProcedureStepSequence).first?.text(.scheduledProcedureStepID) == "SPS-1")
        #expect(back[.pixelData] == .bytes([1, 2, 3, 4, 5, 6], words: false))
        #expect(!FileManager.default.fileExists(atPath: path + ".partial"))
    }

    @Test func badValuesAreRefusedAndWriteNothing() throws {
        let dir = TemporaryDirectory("dxdcm")
        var ds = DicomDataset()
        ds.set(.sopClassUID, SOPClass.secondaryCapture)
        ds.set(.sopInstanceUID, "2.25.1")
        ds.set(.rows, "two")  // US from text that is not a number
        #expect(throws: DicomFailure.self) { try DicomFile.write(ds, to: dir.file("b.dcm")) }
        ds.set(.rows, 2)
        ds.set(.patientID, "P\u{0}1")
        #expect(throws: DicomFailure.self) { try DicomFile.write(ds, to: dir.file("b.dcm")) }
        #expect(!FileManager.default.fileExists(atPath: dir.file("b.dcm")))
        #expect(throws: DicomFailure.self) { try DicomFile.write(DicomDataset(), to: "/nonexistent/dir/c.dcm") }
    }

    @Test func garbageFilesAreClearErrors() throws {
        let dir = TemporaryDirectory("dxdcm")
        var generator = SystemRandomNumberGenerator()
        for k in 0..<20 {
            var bytes = (0..<(k * 37)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if k % 2 == 1 { bytes = [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + bytes }
            let path = dir.file("g\(k).dcm")
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            do {
                _ = try DicomFile.read(path)
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        #expect(throws: DicomFailure.self) { try DicomFile.read(dir.file("absent.dcm")) }
    }

    // MARK: Worklist items

    static func answer(patientID: String? = "P-7", studyUID: String? = "1.2.3.4") -> DicomDataset {
        var step = DicomDataset()
        step.set(.scheduledStationAETitle, "DEXA1")
        step.set(.scheduledProcedureStepStartDate, "20261204")
        step.set(.scheduledProcedureStepStartTime, "093000")
        step.set(.modality, "BMD")
        step.set(.scheduledProcedureStepID, "SPS-7")
        var ds = DicomDataset()
        ds.set(.patientName, "Example^Ada")
        ds.set(.patientID, patientID)
        ds.set(.patientBirthDate, "19560314")
        ds.set(.patientSex, "F")
        ds.set(.accessionNumber, "ACC-7")
        ds.set(.studyInstanceUID, studyUID)
        ds.set(.requestedProcedureDescription, "DXA spine and hips")
        ds.set(.scheduledProcedureStepSequence, items: [step])
        return ds
    }

    @Test func aWorklistAnswerBecomesAnItem() throws {
        let item = try WorklistItem.from(Self.answer()).get()
        #expect(item.patientID == "P-7")
        #expect(item.displayName == "Ada Example")
        #expect(item.birthDateISO == "1956-03-14")
        #expect(item.accessionNumber == "ACC-7")
        #expect(item.studyInstanceUID == "1.2.3.4")
        #expect(item.scheduledStart == "2026-12-04 09:30")
        #expect(item.scheduledStationAETitle == "DEXA1")
        #expect(item.scheduledProcedureStepID == "SPS-7")
        // An item the exam cannot start from says why.
        #expect((try? WorklistItem.from(Self.answer(patientID: nil)).get()) == nil)
        #expect((try? WorklistItem.from(Self.answer(studyUID: nil)).get()) == nil)
        #expect((try? WorklistItem.from(DicomDataset()).get()) == nil)
    }

    @Test func theQueryAsksForEveryReturnKey() {
        let q = WorklistQuery(stationAETitle: "DEXA1", date: "20261204").dataset
        for tag in [DicomTag.patientName, .patientID, .patientBirthDate, .patientSex, .accessionNumber, .studyInstanceUID,
                    .referringPhysicianName, .requestedProcedureDescription, .requestedProcedureID] {
            #expect(q[tag] != nil, "\(tag)")
        }
        let step = q.items(.scheduledProcedureStepSequence).first
        #expect(step?.text(.scheduledStationAETitle) == "DEXA1")
        #expect(step?.text(.scheduledProcedureStepStartDate) == "20261204")
        #expect(step?.text(.modality) == "BMD")
        #expect(step?[.scheduledProcedureStepStartTime] == .empty)
    }
}

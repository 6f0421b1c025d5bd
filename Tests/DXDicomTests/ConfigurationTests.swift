@testable import DXDicom
import Foundation
import Testing

@Suite("DICOM configuration")
struct ConfigurationTests {
    @Test func aFullFileIsRead() throws {
        let c = try DicomConfiguration.parse("""
            # the station
            ae_title = DEXA1
            station_name = DX1-ROOM4   # its name in the objects
            institution = St Example Hospital
            uid_root = 1.2.826.0.1.3680043.10.9
            worklist = RIS@ris.example:11112
            worklist_modality = any
            mpps = RIS@ris.example:11113
            storage = PACS@[::1]:104
            commitment = PACS@pacs.example:104
            listen_port = 11114
            connect_timeout_s = 3
            message_timeout_s = 60
            """)
        #expect(c.aeTitle == "DEXA1")
        #expect(c.stationName == "DX1-ROOM4")
        #expect(c.institutionName == "St Example Hospital")
        #expect(c.uidRoot == "1.2.826.0.1.3680043.10.9")
        #expect(c.worklist == DicomPeer(host: "ris.example", port: 11112, aeTitle: "RIS", connectTimeout: 3, messageTimeout: 60))
        #expect(c.worklistModality == nil)
        #expect(c.storage?.host == "::1")
        #expect(c.commitment?.port == 104 && c.listenPort == 11114)
        #expect(c.mpps?.aeTitle == "RIS")
    }

    @Test func theDefaultsHaveNoPeers() throws {
        let c = try DicomConfiguration.parse("")
        #expect(c.aeTitle == "DEXA")
        #expect(c.worklist == nil && c.storage == nil && c.mpps == nil && c.commitment == nil)
        #expect(c.worklistModality == "BMD")
        #expect(!c.stationIdentity.isEmpty)
    }

    /// Every bad line names its line and what is wrong; nothing is ignored.
    @Test(arguments: [
        "ae_titel = DEXA1", "ae_title = SEVENTEEN_CHARSXX", "ae_title =", "uid_root = 1.02.3", "worklist = ris.example:104",
        "worklist = RIS@ris.example", "worklist = RIS@ris.example:0", "worklist = RIS@ris.example:70000", "worklist = @host:104",
        "storage = PACS@:104", "connect_timeout_s = 0", "message_timeout_s = ten", "worklist_modality = bmd", "just words",
        "ae_title = A\nae_title = B", "station_name = ", "institution = \(String(repeating: "x", count: 65))", "storage = PA\\CS@pacs:104",
        "commitment = PACS@pacs:104", "listen_port = 0", "listen_port = 65536", "listen_port = any",
    ])
    func aBadLineIsAnErrorThatNamesIt(_ text: String) {
        #expect(throws: DicomConfiguration.Failure.self) { try DicomConfiguration.parse(text) }
        do { _ = try DicomConfiguration.parse("# first\n" + text) } catch {
            #expect(error.description.contains("line 2") || error.description.contains("line 3"), "\(error)")
        }
    }

    @Test func garbageNeverCrashes() {
        var g = SystemRandomNumberGenerator()
        let pieces = ["=", "@", ":", "#", "\n", " ", "ae_title", "worklist", "uid_root", "1.2", "104", "\u{0}", "ü", "[", "]", "99999999999999999999"]
        for _ in 0..<2000 {
            let text = (0..<Int.random(in: 0...12, using: &g)).map { _ in pieces[Int.random(in: 0..<pieces.count, using: &g)] }.joined()
            _ = try? DicomConfiguration.parse(text)
        }
    }

    @Test func aMissingFileIsTheDefaultsOnlyWhenOptional() throws {
        #expect(throws: DicomConfiguration.Failure.self) { try DicomConfiguration.load(path: "/nonexistent/dicom.conf") }
        #expect(try DicomConfiguration.load(path: "/nonexistent/dicom.conf", optional: true).worklist == nil)
    }
}

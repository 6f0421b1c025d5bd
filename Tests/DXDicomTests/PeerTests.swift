@testable import DXDicom
import DXTestSupport
import Foundation
import Testing

/// Associations with peers we did not write, on loopback: DCMTK's worklist server, Orthanc,
/// and sockets that misbehave.
@Suite("DICOM peers", .serialized)
struct PeerTests {
    @Test(.enabled(if: DicomTools.available)) func theWorklistServesTodaysThreeItemsForThisStation() async throws {
        let server = try await WorklistServer(items: WorklistServer.exampleItems(date: "20261204"))
        defer { server.stop() }
        let association = DicomAssociation(peer: DicomPeer(host: "127.0.0.1", port: server.port, aeTitle: server.aeTitle), callingAETitle: "DEXA1")
        let answers = try await offPool { try association.findWorklist(WorklistQuery(stationAETitle: "DEXA1", date: "20261204").dataset) }
        #expect(answers.leftOut == 0)
        let items = try answers.datasets.map { try WorklistItem.from($0).get() }.sorted { $0.scheduledTime < $1.scheduledTime }
        #expect(items.map(\.accessionNumber) == ["ACC-1", "ACC-2", "ACC-3", "ACC-5"], "\(server.log)")
        // ACC-2 in UTF-8, ACC-5 in Latin-1 (ISO_IR 100): both read as their characters.
        #expect(items.map(\.displayName) == ["Ada Example", "Zoë Müller", "Chidi Okafor", "Søren Ødegård"])
        #expect(items.allSatisfy { !$0.patientName.contains("\u{FFFD}") })
        #expect(items.first?.studyInstanceUID == "1.2.826.0.1.3680043.10.9.1")
        #expect(items.first?.birthDateISO == "1956-03-14")
        #expect(items.first?.referringPhysicianName == "Referrer^Rita")
        #expect(items.first?.requestedProcedureID == "RP-ACC-1")
        #expect(items.first?.scheduledStart == "2026-12-04 08:30")
        // Another day: nothing.
        let tomorrow = try await offPool { try association.findWorklist(WorklistQuery(stationAETitle: "DEXA1", date: "20261205").dataset) }
        #expect(tomorrow.datasets.isEmpty)
    }

    @Test(.enabled(if: DicomTools.available)) func orthancReceivesEveryObjectOfTheExam() async throws {
        let orthanc = try await OrthancServer()
        defer { orthanc.stop() }
        let study = DicomStudy(studyInstanceUID: "1.2.826.0.1.3680043.10.9.1", accessionNumber: "ACC-1")
        let (_, objects, _) = try ExamObjectsTests.objects(study: study)
        let dir = TemporaryDirectory("dxdcm")
        let paths = objects.map { dir.file($0.name + ".dcm") }
        for (o, path) in zip(objects, paths) { try DicomFile.write(o.dataset, to: path) }
        let association = DicomAssociation(peer: DicomPeer(host: "127.0.0.1", port: orthanc.dicomPort, aeTitle: orthanc.aeTitle), callingAETitle: "DEXA1")
        try await offPool { try association.echo() }
        let sent = await offPool { association.store(paths) }
        #expect(sent.failure == nil, "\(sent.failure?.description ?? "")")
        #expect(sent.statuses == Array(repeating: 0, count: objects.count))
        let stored = try await orthanc.instances()
        #expect(stored.count == objects.count)
        let uids = Set(try await stored.asyncMap { try await orthanc.tags(ofInstance: $0["ID"] as? String ?? "")["SOPInstanceUID"] as? String ?? "" })
        #expect(uids == Set(objects.map(\.sopInstanceUID)))
        let studies = try await orthanc.get("/studies?expand") as? [[String: Any]] ?? []
        #expect(studies.count == 1)
        let main = studies.first?["MainDicomTags"] as? [String: Any]
        #expect(main?["AccessionNumber"] as? String == "ACC-1")
        #expect(main?["StudyInstanceUID"] as? String == "1.2.826.0.1.3680043.10.9.1")
        // Sent again (a service engineer's resend): the same instances, no copies.
        let again = await offPool { association.store(paths) }
        #expect(again.failure == nil && again.statuses.allSatisfy { $0 == 0 }, "\(again)")
        #expect(try await orthanc.instances().count == objects.count)
    }

    @Test(.enabled(if: DicomTools.available)) func aWrongCalledAETitleIsRefusedInWords() async throws {
        let orthanc = try await OrthancServer()
        defer { orthanc.stop() }
        let association = DicomAssociation(peer: DicomPeer(host: "127.0.0.1", port: orthanc.dicomPort, aeTitle: "NOTORTHANC"), callingAETitle: "DEXA1")
        let error = await #expect(throws: DicomFailure.self) { try await offPool { try association.echo() } }
        #expect(error?.description.contains("NOTORTHANC") == true, "\(error?.description ?? "")")
    }

    @Test(.timeLimit(.minutes(1))) func nobodyListeningIsAClearErrorQuickly() async throws {
        let port = try DicomTools.freePort()
        let association = DicomAssociation(peer: DicomPeer(host: "127.0.0.1", port: port, aeTitle: "PACS", connectTimeout: 2), callingAETitle: "DEXA1")
        let error = await #expect(throws: DicomFailure.self) { try await offPool { try association.echo() } }
        #expect(error?.description.contains("PACS@127.0.0.1:\(port)") == true, "\(error?.description ?? "")")
        // A file that cannot be read is answered as such, and the others still go.
        let unreadable = await offPool { association.store(["/nonexistent.dcm"]) }
        #expect(unreadable.failure == nil && unreadable.statuses == [DimseStatus.unreadable])
        let dir = TemporaryDirectory("dxdcm")
        var ds = DicomDataset()
        ds.set(.sopClassUID, SOPClass.secondaryCapture)
        ds.set(.sopInstanceUID, "2.25.42")
        try DicomFile.write(ds, to: dir.file("a.dcm"))
        let sent = await offPool { association.store(["/nonexistent.dcm", dir.file("a.dcm")]) }
        #expect(sent.failure?.description.contains("PACS@127.0.0.1:\(port)") == true)
        #expect(sent.statuses == [DimseStatus.unreadable, nil])
    }

    /// A peer that accepts the connection and then closes it, one that answers garbage, one
    /// that says nothing: each a failure in words within the peer's timeouts, the caller
    /// unharmed.
    @Test(.timeLimit(.minutes(1)), arguments: [MisbehavingPeer.Behaviour.closeAtOnce, .garbage, .silent])
    func aMisbehavingPeerIsAFailureNotACrash(_ behaviour: MisbehavingPeer.Behaviour) async throws {
        let peer = try MisbehavingPeer(behaviour)
        defer { peer.stop() }
        let association = DicomAssociation(peer: DicomPeer(host: "127.0.0.1", port: peer.port, aeTitle: "PACS", connectTimeout: 2,
                                                           associationTimeout: 2, messageTimeout: 2), callingAETitle: "DEXA1")
        let error = await #expect(throws: DicomFailure.self) { try await offPool { try association.echo() } }
        #expect(error?.description.isEmpty == false)
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await transform(e)) }
        return out
    }
}

import DXAcquisition
import DXAnalysis
import DXDecomposition
import DXDicom
import DXReport
import DXStore
import Foundation
import Logging
import ServiceLifecycle

/// The DICOM service (`dexa-dicomd`): its own process and unit, the only one that opens
/// DICOM associations for the exams. It reads the results dexad publishes in the exam store,
/// builds each exam's objects into files beside the store, queues them in the store
/// (`dicom_object`) and sends them to the storage peer: in order, retried with backoff while
/// the peer is down, marked sent only when the peer answered success. A restart of either
/// process loses nothing and sends nothing twice that was answered.
public actor DicomService: Service {
    public struct Settings: Sendable {
        /// Where the objects' files go (`STATE/dicom`).
        public var objectDirectory: String
        /// How often the store is looked at for new results and due objects.
        public var pollInterval: Duration = .seconds(2)
        /// The wait after an object's first failure, doubled each failure up to `longestWait`.
        public var firstWait: Duration = .seconds(10)
        public var longestWait: Duration = .seconds(600)
        /// At most this many objects on one association.
        public var batch = 50

        public init(objectDirectory: String) { self.objectDirectory = objectDirectory }
    }

    let store: ExamStore
    let config: DicomConfiguration
    let settings: Settings
    let clock: any Clock<Duration>
    let now: @Sendable () -> Date
    let logger: Logger
    /// The last round's trouble with the peer, said once when it starts and once when it ends.
    private var peerTrouble: String?
    /// Results whose build failed for a reason that may pass (a full disk): not before then.
    private var buildRetry: [Int64: (at: Date, failures: Int)] = [:]

    public init(store: ExamStore, config: DicomConfiguration, settings: Settings, clock: any Clock<Duration> = ContinuousClock(),
                now: @escaping @Sendable () -> Date = Date.init, logger: Logger) {
        self.store = store; self.config = config; self.settings = settings; self.clock = clock; self.now = now; self.logger = logger
    }

    public func run() async throws {
        logger.notice("dexa-dicomd: AE \(config.aeTitle), storage \(config.storage?.description ?? "none: objects are built for export only")")
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await round()
            do { try await clock.sleep(for: settings.pollInterval) } catch { break }
        }
        logger.notice("dexa-dicomd stopped")
    }

    /// One round: new results built and queued, then the due objects sent. What a test drives.
    public func round() async {
        await build()
        await send()
    }

    // MARK: Building

    /// Why objects could not be built: for good (a decomposed scan is gone), or for now.
    enum BuildFailure: Error {
        case permanent(String)
        case transient(String)
    }

    func build() async {
        let published: [PublishedResults]
        do { published = try store.resultsToBuild() } catch {
            logger.error("reading published results: \(error)")
            return
        }
        for p in published {
            if let retry = buildRetry[p.id], retry.at > now() { continue }
            if Task.isShuttingDownGracefully { return }
            let send = config.storage != nil
            let outcome: Result<[(name: String, sopClassUID: String, sopInstanceUID: String, path: String)], BuildFailure> = await Blocking.run { [self] in
                Result { () throws(BuildFailure) in try self.writeObjects(for: p) }
            }
            do {
                switch outcome {
                case .success(let objects):
                    try store.queueObjects(resultID: p.id, examID: p.examID, revision: p.revision, objects: objects, send: send, at: now())
                    buildRetry[p.id] = nil
                    logger.info("exam \(p.examID) revision \(p.revision): \(objects.count) objects \(send ? "queued" : "built for export (no storage peer)")")
                case .failure(.permanent(let why)):
                    logger.error("exam \(p.examID) revision \(p.revision): objects cannot be built: \(why)")
                    try store.markBuildFailed(resultID: p.id, error: why)
                case .failure(.transient(let why)):
                    let failures = (buildRetry[p.id]?.failures ?? 0) + 1
                    buildRetry[p.id] = (now().addingTimeInterval(wait(afterFailures: failures)), failures)
                    logger.warning("exam \(p.examID) revision \(p.revision): objects not built (try \(failures)): \(why)")
                }
            } catch {
                // The store itself failed: tried again next round.
                logger.error("exam \(p.examID): \(error)")
                return
            }
        }
    }

    /// The objects' files for published results, written under the object folder and on
    /// disk (fsync) before they are queued.
    nonisolated func writeObjects(for p: PublishedResults) throws(BuildFailure) -> [(name: String, sopClassUID: String, sopInstanceUID: String, path: String)] {
        let scans = ReportWriter.scans(for: p.results)
        let missing = p.results.sites.filter { $0.result != nil && scans[$0.site] == nil }
        if !missing.isEmpty {
            // Gone for good, or unreadable for now (a disk error): the file says which.
            let paths = missing.compactMap(\.capture).map { DecomposedScan.path(forCapture: $0) }
            let why = "the decomposed scan of \(missing.map(\.title).joined(separator: ", ")) cannot be read"
            if paths.contains(where: { FileManager.default.fileExists(atPath: $0) }) { throw .transient(why) }
            throw .permanent(why + " (its file is gone)")
        }
        let serial = p.results.sites.compactMap(\.device).first.map { String($0.split(separator: " ").last ?? "") } ?? ""
        let station = DicomStation(aeTitle: config.aeTitle, stationName: config.stationName, institutionName: config.institutionName,
                                   deviceSerialNumber: serial, softwareVersions: "dexa analysis \(p.results.analysisVersion)")
        let exam = ExamObjects(results: p.results, station: station, uids: config.uids, revision: p.revision)
        let built: [DicomObject]
        do { built = try exam.images(scans: scans, created: p.at) } catch { throw .transient(error.description) }
        let folder = "\(settings.objectDirectory)/exam-\(p.examID)/revision-\(p.revision)"
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw .transient("cannot make \(folder): \(error.localizedDescription)")
        }
        var out: [(name: String, sopClassUID: String, sopInstanceUID: String, path: String)] = []
        for o in built {
            let path = "\(folder)/\(o.name).dcm"
            do { try DicomFile.write(o.dataset, to: path, durable: true) } catch { throw .transient(error.description) }
            out.append((o.name, o.sopClassUID, o.sopInstanceUID, path))
        }
        return out
    }

    // MARK: Sending

    func send() async {
        guard let peer = config.storage else { return }
        let due: [OutboxObject]
        do { due = try store.dueObjects(now: now(), limit: settings.batch) } catch {
            logger.error("reading the queue: \(error)")
            return
        }
        guard !due.isEmpty else { return }
        // An object whose file is gone (a power cut before it reached the disk, a cleaned
        // folder) is built again from its results: the same UIDs.
        for resultID in Set(due.filter { !FileManager.default.fileExists(atPath: $0.path) }.compactMap { try? store.resultID(ofObject: $0.id) }) {
            guard let p = try? store.publishedResults(resultID) else { continue }
            let rebuilt = await Blocking.run { [self] in Result { () throws(BuildFailure) in try self.writeObjects(for: p) } }
            if case .failure(let why) = rebuilt { logger.warning("exam \(p.examID): files not rebuilt: \(why)") }
        }
        let association = DicomAssociation(peer: peer, callingAETitle: config.aeTitle)
        let paths = due.map(\.path)
        let (statuses, failure) = await Blocking.run { association.store(paths) }
        let at = now()
        var outcomes: [(id: Int64, outcome: SendOutcome)] = []
        for (object, status) in zip(due, statuses) {
            switch status {
            case .some(let s) where DimseStatus.isSuccess(s):
                outcomes.append((object.id, .sent(note: nil)))
            case .some(let s) where DimseStatus.isWarning(s):
                outcomes.append((object.id, .sent(note: "\(peer.description) answered \(DimseStatus.words(s))")))
                logger.warning("\(object.name) of exam \(object.examID) stored with a warning: \(DimseStatus.words(s))")
            case .some(let s) where DimseStatus.isPermanent(s):
                outcomes.append((object.id, .failed(error: "\(peer.description): \(DimseStatus.words(s))")))
                logger.error("\(object.name) of exam \(object.examID) refused for good: \(DimseStatus.words(s))")
            case .some(let s):
                outcomes.append((object.id, .retry(error: "\(peer.description) answered \(DimseStatus.words(s))",
                                                   at: at.addingTimeInterval(wait(afterFailures: object.attempts + 1)))))
            case .none:
                outcomes.append((object.id, .retry(error: failure?.description ?? "not sent", at: at.addingTimeInterval(wait(afterFailures: object.attempts + 1)))))
            }
        }
        do { try store.record(outcomes, at: at) } catch { logger.error("recording what was sent: \(error)") }
        let sent = outcomes.filter { if case .sent = $0.outcome { return true }; return false }.count
        if let failure {
            if peerTrouble == nil { logger.warning("storage \(peer.description): \(failure); \(due.count - sent) objects wait") }
            peerTrouble = failure.description
        } else if peerTrouble != nil {
            logger.notice("storage \(peer.description) answers again")
            peerTrouble = nil
        }
        if sent > 0 { logger.info("\(sent) objects sent to \(peer.description)") }
    }

    /// Seconds to wait after `failures` failures: first, doubled each, at most the longest.
    nonisolated func wait(afterFailures failures: Int) -> TimeInterval {
        let first = Double(settings.firstWait.components.seconds), longest = Double(settings.longestWait.components.seconds)
        return min(longest, first * pow(2, Double(max(0, failures - 1))))
    }
}

/// This station's identity in its UIDs: a random UUID made once and kept in the state
/// directory (`dicom/station-id`), not the machine id (which is not to be exposed, machine-id(5)).
public enum StationIdentity {
    public static func load(directory: String) throws -> String {
        let path = directory + "/station-id"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !id.isEmpty { return id }
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let id = UUID().uuidString.lowercased()
        try DicomFile.writeText(id + "\n", to: path)
        return id
    }
}


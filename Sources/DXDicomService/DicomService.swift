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
        /// A storage commitment request unanswered this long is made again (a new transaction).
        public var commitmentWait: Duration = .seconds(3600)

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
    /// The storage commitment results' acceptor (with a commitment peer and `listen_port`).
    nonisolated let listener: CommitmentListener?
    /// Whether the store knows since when steps are announced (written once per run).
    private var announcing = false
    /// After a failed commitment request: not again before then.
    private var commitRetry: (at: Date, failures: Int)?

    /// Fails only when the storage commitment listener cannot be made.
    public init(store: ExamStore, config: DicomConfiguration, settings: Settings, clock: any Clock<Duration> = ContinuousClock(),
                now: @escaping @Sendable () -> Date = Date.init, logger: Logger) throws(DicomFailure) {
        self.store = store; self.config = config; self.settings = settings; self.clock = clock; self.now = now; self.logger = logger
        if config.commitment != nil, let port = config.listenPort {
            listener = try CommitmentListener(aeTitle: config.aeTitle, port: port)
        } else {
            listener = nil
        }
    }

    /// Starts accepting storage commitment results (run does; a test that drives rounds calls it).
    public nonisolated func startListening() {
        listener?.start()
    }

    public nonisolated func stopListening() {
        listener?.stop()
    }

    public func run() async throws {
        logger.notice("dexa-dicomd: AE \(config.aeTitle), storage \(config.storage?.description ?? "none: objects are built for export only"), MPPS \(config.mpps?.description ?? "none"), storage commitment \(config.commitment.map { "\($0.description), results on port \(config.listenPort ?? 0)" } ?? "none")")
        startListening()
        defer { stopListening() }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await round()
            // A listener that is not listening leaves every commitment unanswered: said and
            // ended (systemd starts the service again), not left to the queue's alert.
            if let why = listener?.failure {
                logger.critical("the storage commitment listener on port \(listener?.port ?? 0) stopped: \(why)")
                throw DicomFailure("the storage commitment listener on port \(listener?.port ?? 0) stopped: \(why)")
            }
            do { try await clock.sleep(for: settings.pollInterval) } catch { break }
        }
        logger.notice("dexa-dicomd stopped")
    }

    /// One round: new results built and queued, then the due objects sent. What a test drives.
    public func round() async {
        await announce()
        await build()
        await performedSteps()
        await send()
        await commit()
        takeCommitmentResults()
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
        var exam: ExamObjects
        do { exam = try objects(of: p) } catch { throw .transient("reading the exam's UIDs: \(error)") }
        // The step announced to the RIS when the exam started (announce() runs before build()
        // in every round): each object refers to it.
        do { exam.performedStepUID = try store.performedSteps(examID: p.examID).first?.sopInstanceUID } catch {
            throw .transient("reading the exam's procedure step: \(error)")
        }
        var built: [DicomObject]
        do { built = try exam.all(scans: scans, created: p.at) } catch { throw .transient(error.description) }
        // A later revision rejects what the PACS was sent of the earlier ones (IHE IOCM):
        // every object of theirs that ever reached it, but their own rejection notes.
        if p.revision > 1 {
            let sent: [OutboxObject]
            do { sent = try store.outbox(examID: p.examID) } catch { throw .transient("reading the exam's queue: \(error)") }
            let rejected = sent.filter { $0.revision < p.revision && $0.sentAt != nil && $0.sopClassUID != SOPClass.keyObjectSelection }
                .map { PerformedObject(name: $0.name, sopClassUID: $0.sopClassUID, sopInstanceUID: $0.sopInstanceUID) }
            if let note = exam.rejectionNote(rejected: rejected, created: p.at) { built.append(note) }
        }
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

    /// The objects of published results, as this station makes them.
    nonisolated func objects(of p: PublishedResults) throws -> ExamObjects {
        let serial = p.results.sites.compactMap(\.device).first.map { String($0.split(separator: " ").last ?? "") } ?? ""
        return ExamObjects(results: p.results, station: station(serial: serial, analysis: p.results.analysisVersion), uids: try uids(forExam: p.examID),
                           revision: p.revision)
    }

    /// The UIDs of an exam's objects: under the root and station identity kept when the
    /// service first named the exam (the configuration's then), so that a changed `uid_root`
    /// moves no later revision, step or resend of it into another study.
    nonisolated func uids(forExam examID: Int64) throws -> UIDGenerator {
        let base = try store.examUIDBase(examID: examID, current: (config.uidRoot, config.stationIdentity), at: now())
        return UIDGenerator(root: base.root, station: base.station)
    }

    nonisolated func station(serial: String, analysis: String) -> DicomStation {
        DicomStation(aeTitle: config.aeTitle, stationName: config.stationName, institutionName: config.institutionName,
                     deviceSerialNumber: serial, softwareVersions: "dexa analysis \(analysis)")
    }

    // MARK: Procedure steps (MPPS)

    /// Exams that started are queued as steps to announce (once each), when an MPPS peer is
    /// configured.
    func announce() async {
        guard config.mpps != nil else { return }
        do {
            if !announcing {
                try store.announceStepsFrom(now())
                announcing = true
            }
            for id in try store.startedExamsWithoutStep() {
                guard let exam = try store.exam(id) else { continue }
                try store.addStep(examID: id, sopInstanceUID: try inProgress(exam).mppsInstanceUID, at: now())
                logger.info("exam \(id) started: its procedure step is announced to the RIS")
            }
        } catch {
            logger.error("reading the started exams: \(error)")
        }
    }

    /// A started exam as its objects name it before it has results: the same study, the
    /// same step UID.
    nonisolated func inProgress(_ exam: StoredExam) throws -> ExamObjects {
        var r = ExamResults(examID: exam.id, state: exam.state,
                            patient: .init(id: exam.patient.id, name: exam.patient.name, sex: exam.patient.sex.rawValue, birthDate: exam.patient.birthDate, ageYears: nil),
                            examDate: String((exam.startedAt ?? exam.createdAt).formatted(.iso8601).prefix(10)), sites: [],
                            diagnosis: .init(basis: "unknown", words: "in progress"), dose: ScanDose(), reference: "", analysisVersion: AnalysisVersion.current)
        r.createdAt = exam.createdAt.formatted(.iso8601)
        r.startedAt = exam.startedAt?.formatted(.iso8601)
        r.scheduled = exam.scheduled
        r.operatorName = exam.operatorName
        return ExamObjects(results: r, station: station(serial: "", analysis: AnalysisVersion.current), uids: try uids(forExam: exam.id))
    }

    /// The due steps' messages: an N-CREATE (IN PROGRESS) when the exam started; the N-SET
    /// (COMPLETED or DISCONTINUED, the performed series, the dose) once the exam has ended and
    /// its objects are built. Each on an association of its own; retried with the queue's
    /// backoff while the RIS does not answer.
    func performedSteps() async {
        guard let peer = config.mpps else { return }
        let due: [PerformedStepRecord]
        do { due = try store.dueSteps(now: now()) } catch {
            logger.error("reading the procedure steps: \(error)")
            return
        }
        let association = DicomAssociation(peer: peer, callingAETitle: config.aeTitle)
        for step in due {
            if Task.isShuttingDownGracefully { return }
            do {
                switch step.state {
                case .create:
                    guard let exam = try store.exam(step.examID) else { continue }
                    let objects = try inProgress(exam)
                    let attributes = objects.mppsInProgress(started: exam.startedAt ?? exam.createdAt)
                    let answer = await Blocking.run { Result { () throws(DicomFailure) in
                        try association.create(sopClass: SOPClass.modalityPerformedProcedureStep, instance: step.sopInstanceUID, attributes: attributes)
                    } }
                    // 0111 (duplicate instance): an earlier N-CREATE arrived and its answer was lost.
                    try record(step, answer, accepted: .inProgress, create: true)
                case .inProgress:
                    guard let exam = try store.exam(step.examID), [.completed, .aborted].contains(exam.state),
                          let (published, built) = try store.builtResults(examID: step.examID) else { continue }
                    let objects = try self.objects(of: published)
                    let performed = built.map { PerformedObject(name: $0.name, sopClassUID: $0.sopClassUID, sopInstanceUID: $0.sopInstanceUID) }
                    let attributes = objects.mppsEnd(objects: performed, ended: exam.endedAt ?? now())
                    let answer = await Blocking.run { Result { () throws(DicomFailure) in
                        try association.set(sopClass: SOPClass.modalityPerformedProcedureStep, instance: step.sopInstanceUID, attributes: attributes)
                    } }
                    try record(step, answer, accepted: published.results.state == .completed ? .completed : .discontinued, create: false)
                default:
                    continue
                }
            } catch {
                logger.error("exam \(step.examID)'s procedure step: \(error)")
                return
            }
        }
    }

    /// Records a step message's answer: accepted, refused for good, or to be tried again.
    /// N-CREATE answered 0111 (the instance exists: an earlier N-CREATE arrived and its answer
    /// was lost) counts as accepted, and so does N-SET answered 0110 (the step may no longer
    /// be updated: an earlier N-SET's answer was lost, or it was ended at the RIS); N-SET
    /// answered 0112 (no such instance: the RIS lost the step, or the peer changed) starts
    /// the step again with its N-CREATE.
    func record(_ step: PerformedStepRecord, _ answer: Result<UInt16, DicomFailure>, accepted: PerformedStepRecord.State, create: Bool) throws {
        let at = now()
        let peer = config.mpps?.description ?? "MPPS"
        let what = create ? "N-CREATE" : "N-SET"
        let retry = at.addingTimeInterval(wait(afterFailures: step.attempts + 1))
        switch answer {
        case .success(let s) where DimseStatus.isSuccess(s) || DimseStatus.isWarning(s) || s == (create ? 0x0111 : 0x0110):
            try store.recordStep(examID: step.examID, state: accepted, error: DimseStatus.isSuccess(s) ? nil : "\(peer) answered \(DimseStatus.words(s))",
                                 retryAt: nil, at: at)
            logger.info("exam \(step.examID): \(what) accepted by \(peer) (\(accepted.rawValue))")
        case .success(0x0112) where !create:
            try store.recordStep(examID: step.examID, state: .create, error: "N-SET: \(peer) has no such step (0x0112): announced again", retryAt: at, at: at)
            logger.warning("exam \(step.examID): \(peer) has no such step; it is announced again")
        case .success(let s) where DimseStatus.isPermanent(s) || s == 0x0106:
            // 0106: the RIS finds a value invalid; sending the same again cannot mend it (a
            // service engineer's resend announces the step again).
            try store.recordStep(examID: step.examID, state: .failed, error: "\(what) refused by \(peer): \(DimseStatus.words(s))", retryAt: nil, at: at)
            logger.error("exam \(step.examID): \(what) refused for good by \(peer): \(DimseStatus.words(s))")
        case .success(let s):
            try store.recordStep(examID: step.examID, state: step.state, error: "\(what): \(peer) answered \(DimseStatus.words(s))", retryAt: retry, at: at)
            logger.warning("exam \(step.examID): \(what) answered \(DimseStatus.words(s)); tried again later")
        case .failure(let why):
            try store.recordStep(examID: step.examID, state: step.state, error: "\(what): \(why)", retryAt: retry, at: at)
            logger.warning("exam \(step.examID): \(what) to \(peer) failed: \(why); tried again later")
        }
    }

    // MARK: Storage commitment

    /// Asks the commitment peer to take responsibility for the objects sent and not yet
    /// committed (up to a batch, one transaction; again for those unanswered after
    /// `commitmentWait`). The answer comes to the listener.
    func commit() async {
        guard let peer = config.commitment, listener != nil else { return }
        if let retry = commitRetry, retry.at > now() { return }
        let wait = Double(settings.commitmentWait.components.seconds)
        let objects: [OutboxObject]
        do { objects = try store.objectsToCommit(askedBefore: now().addingTimeInterval(-wait), limit: settings.batch) } catch {
            logger.error("reading the objects to commit: \(error)")
            return
        }
        guard !objects.isEmpty else { return }
        // A new transaction each request (PS3.4 J.3.2.1.1: never reused).
        let transaction = config.uids.uid(exam: "commitment \(UUID().uuidString)")
        let references = objects.map { StorageCommitment.Reference(sopClassUID: $0.sopClassUID, sopInstanceUID: $0.sopInstanceUID) }
        let association = DicomAssociation(peer: peer, callingAETitle: config.aeTitle)
        let answer = await Blocking.run { Result { () throws(DicomFailure) in try association.requestCommitment(transactionUID: transaction, references) } }
        switch answer {
        case .success(let s) where DimseStatus.isSuccess(s):
            do { try store.commitmentRequested(objects.map(\.id), transaction: transaction, at: now()) } catch {
                logger.error("recording the commitment request: \(error)")
            }
            commitRetry = nil
            logger.info("storage commitment of \(objects.count) objects asked of \(peer.description) (transaction \(transaction))")
        case .success(let s):
            failedCommitment("\(peer.description) answered \(DimseStatus.words(s))")
        case .failure(let why):
            failedCommitment(why.description)
        }
    }

    private func failedCommitment(_ why: String) {
        let failures = (commitRetry?.failures ?? 0) + 1
        commitRetry = (now().addingTimeInterval(wait(afterFailures: failures)), failures)
        logger.warning("storage commitment request failed (try \(failures)): \(why)")
    }

    /// The results the listener received: committed objects marked; refused ones sent again.
    func takeCommitmentResults() {
        guard let listener else { return }
        for problem in listener.drainProblems() { logger.warning("storage commitment listener: \(problem)") }
        for report in listener.drain() {
            do {
                let matched = try store.recordCommitment(transaction: report.transactionUID, committed: report.committed,
                                                         failed: report.failed.map { ($0.sopInstanceUID, StorageCommitment.words(reason: $0.reason)) }, at: now())
                if matched == 0 {
                    logger.warning("storage commitment result from \(report.callingAETitle) for transaction \(report.transactionUID), which names none of our requested objects")
                } else {
                    logger.info("storage commitment from \(report.callingAETitle): \(report.committed.count) committed, \(report.failed.count) refused (sent again)")
                }
            } catch {
                logger.error("recording a storage commitment result: \(error)")
            }
        }
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


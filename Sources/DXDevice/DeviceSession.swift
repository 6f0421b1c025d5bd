import DXProtocol
import Foundation
import DXTransport
import Logging
import Synchronization

/// What the session tells its listeners besides responses.
public enum DeviceNotice: Sendable, Equatable {
    case event(Event)
    /// Data frames went missing (a gap in the data seq).
    case dataGap(missing: UInt64, atSeq: UInt32)
    case linkLost(String)
    case connected(DeviceInfo)
}

/// What reaches a running scan: its lines, and the events that end or disturb it.
public enum ScanFeed: Sendable {
    case lines(DataFrame)
    case gap(missingFrames: UInt64)
    case started(deviceTimeUs: UInt64)
    case completed(lines: UInt32, exposureMs: UInt32, dapX1000: UInt32)
    case aborted(reason: AbortReason, linesSent: UInt32)
    case interlocks(Interlocks)
    case fault(FaultCode, String)
    case watchdogExpired
    case linkLost(String)
    /// The device is no longer running the scan, yet no end event for it arrived (lost to a
    /// damaged frame or a full feed): found by asking GET_STATUS.
    case endLost(String)
}

/// The link's counters, for status and metrics.
public struct LinkCounters: Sendable, Equatable, Codable {
    public var commandsSent = 0
    public var responses = 0
    public var timeouts = 0
    public var events = 0
    public var eventGaps = 0
    public var dataFrames = 0
    public var dataGaps = 0
    public var missingDataFrames: UInt64 = 0
    public var linesReceived = 0
    public var linesDropped = 0
    public var unreadableFrames = 0
    public var unmatchedResponses = 0
    public var heartbeatsSent = 0
    public var heartbeatFailures = 0
    public var responseErrors = FrameErrorCounts()
    public var dataErrors = FrameErrorCounts()
    public init() {}

    public enum CodingKeys: String, CodingKey {
        case responses, timeouts, events
        case commandsSent = "commands_sent", eventGaps = "event_gaps", dataFrames = "data_frames", dataGaps = "data_gaps"
        case missingDataFrames = "missing_data_frames", linesReceived = "lines_received", linesDropped = "lines_dropped"
        case unreadableFrames = "unreadable_frames", unmatchedResponses = "unmatched_responses", heartbeatsSent = "heartbeats_sent"
        case heartbeatFailures = "heartbeat_failures", responseErrors = "response_errors", dataErrors = "data_errors"
    }
}

/// One DX-1 on one transport: numbers commands and matches their responses by seq, with
/// timeouts; reads events and data frames; keeps the heartbeat going while a scan runs
/// (ICD §4); tracks state and interlocks; counts frame errors and gaps.
public actor DeviceSession {
    public let transport: any DeviceTransport
    private let clock: any Clock<Duration>
    private let logger: Logger
    public let commandTimeout: Duration
    /// The longest the host lets pass between its frames while a scan may expose. Half the
    /// ICD's 250 ms, so that a wake-up late by a whole period still keeps the ICD's rule.
    public let heartbeatInterval: Duration
    public static let defaultHeartbeatInterval = ICDTiming.heartbeatLimit / 2

    private var seq: UInt32 = 0
    private var pending: [UInt32: CheckedContinuation<Response, any Error>] = [:]
    private var pendingOpcode: [UInt32: Opcode] = [:]
    private var timeouts: [UInt32: Task<Void, Never>] = [:]
    private var readerTask: Task<Void, Never>?
    private var writerTask: Task<Void, Never>?
    /// Frames go out through one writer, in the order they were numbered.
    private var outbound: AsyncStream<(UInt32, [UInt8])>.Continuation?
    private var heartbeatTask: Task<Void, Never>?
    private var responseDecoder = FrameDecoder()
    private var dataDecoder = FrameDecoder()
    private var eventSeq = SequenceTracker()
    private var dataSeq = SequenceTracker()
    private var subscribers: [Int: AsyncStream<DeviceNotice>.Continuation] = [:]
    private var nextSubscriber = 0
    private var scanFeed: (id: UInt32, continuation: AsyncStream<ScanFeed>.Continuation)?

    public private(set) var info: DeviceInfo?
    public private(set) var lastStatus: DeviceStatus?
    public private(set) var state: DeviceState?
    public private(set) var interlocks: Interlocks?
    public private(set) var connected = false
    public private(set) var counters = LinkCounters()
    /// Time of the last frame the host queued (heartbeat scheduling), on the session clock.
    private let stopwatch: Stopwatch
    public private(set) var lastSent: Duration = .zero
    /// Gaps between frames as they were written to the transport.
    private let sendGaps: SendGapMeter
    /// Heartbeats sent and not yet answered, by seq, with the time they went out.
    private var heartbeatsInFlight: [UInt32: Duration] = [:]
    /// The longest gap between two frames the host wrote to the device, since the session began.
    public var longestSendGap: Duration { sendGaps.longestEver }
    /// How long since the host last sent a frame (heartbeats included), on the session clock.
    public var sinceLastSent: Duration { lastSent == .zero ? .zero : stopwatch.elapsed - lastSent }

    public init(transport: any DeviceTransport, clock: any Clock<Duration>, logger: Logger = Logger(label: "dexa.device"),
                commandTimeout: Duration = .seconds(2), heartbeatInterval: Duration = DeviceSession.defaultHeartbeatInterval) {
        self.transport = transport
        self.clock = clock
        self.logger = logger
        self.commandTimeout = commandTimeout
        self.heartbeatInterval = heartbeatInterval
        self.stopwatch = Stopwatch(clock)
        self.sendGaps = SendGapMeter(stopwatch: stopwatch)
    }

    // MARK: - Link

    /// Opens the link and reads the unit's identity and status (ICD: before accepting work).
    @discardableResult
    public func connect() async throws -> DeviceInfo {
        if connected { await disconnect(reason: "reconnecting") }
        let stream = try await transport.open()
        responseDecoder = FrameDecoder()
        dataDecoder = FrameDecoder()
        eventSeq.reset()
        dataSeq.reset()
        connected = true
        let (out, outCont) = AsyncStream<(UInt32, [UInt8])>.makeStream()
        outbound = outCont
        writerTask = Task { [weak self, transport, sendGaps] in
            for await (seq, bytes) in out {
                do {
                    try await transport.send(bytes)
                    sendGaps.written()
                } catch {
                    await self?.sendFailed(seq, error)
                }
            }
        }
        readerTask = Task { [weak self] in
            do {
                for try await chunk in stream {
                    guard let self else { return }
                    await self.ingest(chunk)
                }
                await self?.linkEnded("device closed the link")
            } catch {
                await self?.linkEnded(String(describing: error))
            }
        }
        do {
            let info = try await DeviceInfo(decoding: execute(.getInfo))
            self.info = info
            booting = false
            try await waitOutBoot()
            booting = false
            logger.info("connected", metadata: ["device": "\(transport.name)", "serial": "\(info.serial)", "fw": "\(info.firmware)"])
            broadcast(.connected(info))
            return info
        } catch let e as WireError {
            await disconnect(reason: "unreadable GET_INFO")
            throw DeviceError.badResponse(.getInfo, e.description)
        } catch {
            await disconnect(reason: booting ? "the unit left the bus while booting" : "handshake failed")
            booting = false
            throw error
        }
    }

    /// The unit was last seen in BOOT on this link: a departure now is the unit on its way
    /// back (a boot loader handing over to the firmware, ICD §1), not a fault of the link.
    private var booting = false

    /// A unit still booting (after power-on or RESET, ICD §1) answers GET_INFO and GET_STATUS
    /// but takes no work, and may leave the bus once more when its firmware starts. The link
    /// counts as up only once the unit is out of BOOT: GET_STATUS every 50 ms, for up to
    /// 5 s (ICD: back within 3 s).
    private func waitOutBoot() async throws {
        let started = stopwatch.elapsed
        while try await refreshStatus().state == .boot {
            booting = true
            guard stopwatch.elapsed - started < .seconds(5) else {
                throw DeviceError.badResponse(.getStatus, "the unit stayed in BOOT for 5 s")
            }
            try await clock.sleep(for: .milliseconds(50))
        }
    }

    public func disconnect(reason: String = "closed by host") async {
        readerTask?.cancel()
        readerTask = nil
        outbound?.finish()
        outbound = nil
        writerTask = nil
        await transport.close()
        linkEnded(reason)
    }

    private func linkEnded(_ why: String) {
        guard connected else { return }
        connected = false
        outbound?.finish()
        outbound = nil
        heartbeatTask?.cancel()
        heartbeatTask = nil
        heartbeatsInFlight = [:]
        if booting {
            logger.notice("the unit left the bus while booting; waiting for it to come back", metadata: ["reason": "\(why)"])
        } else {
            logger.warning("device link lost", metadata: ["reason": "\(why)"])
        }
        let waiting = pending
        pending = [:]
        for t in timeouts.values { t.cancel() }
        timeouts = [:]
        pendingOpcode = [:]
        for (_, c) in waiting { c.resume(throwing: DeviceError.linkLost(why)) }
        scanFeed?.continuation.yield(.linkLost(why))
        broadcast(.linkLost(why))
    }

    // MARK: - Commands

    /// Sends a command and waits for its response (any status).
    public func send(_ command: Command, timeout: Duration? = nil) async throws -> Response {
        guard connected else { throw DeviceError.notConnected }
        seq &+= 1
        if seq == 0 { seq = 1 }
        let mySeq = seq
        let frame = Frame(kind: .command, seq: mySeq, payload: command.payload)
        let bytes = try frame.encoded()
        let limit = timeout ?? commandTimeout
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Response, any Error>) in
                pending[mySeq] = c
                pendingOpcode[mySeq] = command.opcode
                counters.commandsSent += 1
                if command == .heartbeat { counters.heartbeatsSent += 1 }
                lastSent = stopwatch.elapsed
                outbound?.yield((mySeq, bytes))
                timeouts[mySeq] = Task { [weak self, clock] in
                    do { try await clock.sleep(for: limit) } catch { return }
                    await self?.fail(mySeq, with: DeviceError.timeout(command.opcode, milliseconds: Int(limit.milliseconds)))
                }
            }
        } onCancel: {
            Task { await self.fail(mySeq, with: CancellationError()) }
        }
    }

    /// A frame could not be written: a timed-out or stalled transfer fails that command
    /// alone; anything else means the link is gone.
    private func sendFailed(_ seq: UInt32, _ error: any Error) {
        let op = pendingOpcode[seq] ?? .getStatus
        switch error {
        case TransportError.timeout:
            fail(seq, with: DeviceError.timeout(op, milliseconds: 0))
        case TransportError.stall:
            fail(seq, with: DeviceError.badResponse(op, "the command endpoint stalled; the halt was cleared"))
        default:
            fail(seq, with: DeviceError.linkLost(String(describing: error)))
        }
    }

    private func fail(_ seq: UInt32, with error: any Error) {
        timeouts.removeValue(forKey: seq)?.cancel()
        guard let c = pending.removeValue(forKey: seq) else { return }
        pendingOpcode.removeValue(forKey: seq)
        if case DeviceError.timeout = error { counters.timeouts += 1 }
        c.resume(throwing: error)
    }

    /// Sends a command that must succeed; returns its result bytes.
    public func execute(_ command: Command, timeout: Duration? = nil) async throws -> [UInt8] {
        let r = try await send(command, timeout: timeout)
        guard r.status == .ok else {
            var context = ""
            if r.status == .interlockOpen, let i = try? await refreshStatus().interlocks { context = i.description }
            if r.status == .badState || r.status == .busy || r.status == .faultActive, let s = state { context = "device is \(s)" }
            throw DeviceError.refused(command.opcode, r.status, context: context)
        }
        return r.result
    }

    /// GET_STATUS. A unit busy moving or scanning may answer BUSY (ICD §3 lists the status;
    /// nothing forbids it for GET_STATUS): asked again, up to five times, 20 ms apart.
    @discardableResult
    public func refreshStatus() async throws -> DeviceStatus {
        var bytes: [UInt8] = []
        for attempt in 0... {
            let r = try await send(.getStatus)
            if r.status == .busy && attempt < 5 {
                try await clock.sleep(for: .milliseconds(20))
                continue
            }
            guard r.status == .ok else { throw DeviceError.refused(.getStatus, r.status, context: state.map { "device is \($0)" } ?? "") }
            bytes = r.result
            break
        }
        do {
            let s = try DeviceStatus(decoding: bytes)
            lastStatus = s
            state = s.state
            interlocks = s.interlocks
            return s
        } catch {
            throw DeviceError.badResponse(.getStatus, error.description)
        }
    }

    /// Stops any exposure: XRAY_OFF, which the device always obeys (ICD §3).
    public func xrayOff() async throws {
        _ = try await execute(.xrayOff, timeout: .milliseconds(500))
    }

    // MARK: - Heartbeat (ICD §4: at least every 250 ms while scanning)

    /// Starts the heartbeat. It belongs to a scan: the scan runner starts it before
    /// START_SCAN goes out and stops it once the device has said the scan is over. No event
    /// stops it: events may arrive before or after the responses that caused them (ICD §5),
    /// so a state change tells nothing about whether X-rays may still be on.
    ///
    /// It sends HEARTBEAT whenever `heartbeatInterval` has passed since the last frame the
    /// host sent (any frame resets the device's watchdog), waking at that deadline rather
    /// than after a fixed sleep, so a late wake-up is not added to the next period.
    public func startHeartbeat() {
        guard heartbeatTask == nil, connected else { return }
        if lastSent == .zero { lastSent = stopwatch.elapsed }
        heartbeatTask = Task { [weak self, clock] in
            while !Task.isCancelled {
                guard let wait = await self?.heartbeatTick() else { return }
                do { try await clock.sleep(for: wait) } catch { return }
            }
        }
    }

    /// Sends a heartbeat when one is due; returns how long until the next one is.
    private func heartbeatTick() -> Duration {
        let since = stopwatch.elapsed - lastSent
        if since < heartbeatInterval { return heartbeatInterval - since }
        sendHeartbeat()
        return heartbeatInterval
    }

    /// Queues a HEARTBEAT at once, without waiting for its answer: a late answer must not
    /// hold up the next beat. Answers are matched in `handleControlFrame`.
    private func sendHeartbeat() {
        guard connected, let outbound else { return }
        let now = stopwatch.elapsed
        // Heartbeats unanswered for a second have failed (the watchdog would have fired).
        for (s, t) in heartbeatsInFlight where now - t > .seconds(1) {
            heartbeatsInFlight.removeValue(forKey: s)
            counters.heartbeatFailures += 1
        }
        seq &+= 1
        if seq == 0 { seq = 1 }
        guard let bytes = try? Frame(kind: .command, seq: seq, payload: Command.heartbeat.payload).encoded() else { return }
        heartbeatsInFlight[seq] = now
        counters.commandsSent += 1
        counters.heartbeatsSent += 1
        lastSent = now
        outbound.yield((seq, bytes))
    }

    public func stopHeartbeat() {
        heartbeatTask?.cancel()
        heartbeatTask = nil
    }

    public var heartbeatRunning: Bool { heartbeatTask != nil }

    /// Starts measuring the longest gap between frames written to the device (a scan's
    /// exposure); `sendGapWindow` reads it.
    public func beginSendGapWindow() { sendGaps.beginWindow() }

    /// The longest gap between host frames since `beginSendGapWindow`, including the time
    /// since the last frame.
    public func sendGapWindow() -> Duration { sendGaps.window }

    // MARK: - Scans

    /// Opens the feed for scan `id`: its data lines and the events that concern it. The
    /// buffer is bounded; lines that do not fit are counted as dropped.
    public func openScanFeed(id: UInt32, capacity: Int = 8192) -> AsyncStream<ScanFeed> {
        scanFeed?.continuation.finish()
        let (stream, c) = AsyncStream<ScanFeed>.makeStream(bufferingPolicy: .bufferingOldest(capacity))
        scanFeed = (id, c)
        if !connected { c.yield(.linkLost("not connected")) }
        return stream
    }

    /// Ends scan `id`'s feed with `endLost`: the device says (GET_STATUS) it is not running
    /// the scan, but no SCAN_COMPLETE or SCAN_ABORTED for it arrived.
    public func endLost(id: UInt32, _ why: String) {
        guard scanFeed?.id == id else { return }
        scanFeed?.continuation.yield(.endLost(why))
    }

    public func closeScanFeed(id: UInt32) {
        guard scanFeed?.id == id else { return }
        scanFeed?.continuation.finish()
        scanFeed = nil
    }

    // MARK: - Notices

    public func notices(capacity: Int = 1024) -> AsyncStream<DeviceNotice> {
        let (stream, c) = AsyncStream<DeviceNotice>.makeStream(bufferingPolicy: .bufferingNewest(capacity))
        let key = nextSubscriber
        nextSubscriber += 1
        subscribers[key] = c
        c.onTermination = { _ in Task { await self.unsubscribe(key) } }
        return stream
    }

    private func unsubscribe(_ key: Int) { subscribers.removeValue(forKey: key) }

    private func broadcast(_ n: DeviceNotice) {
        for c in subscribers.values { c.yield(n) }
    }

    // MARK: - Incoming

    private func ingest(_ chunk: TransportChunk) {
        switch chunk.endpoint {
        case .responseIn:
            responseDecoder.append(chunk.bytes)
            while let f = responseDecoder.next() { handleControlFrame(f) }
            counters.responseErrors = responseDecoder.errors
        case .dataIn:
            dataDecoder.append(chunk.bytes)
            while let f = dataDecoder.next() { handleDataFrame(f) }
            counters.dataErrors = dataDecoder.errors
        case .commandOut:
            break
        }
    }

    private func handleControlFrame(_ f: Frame) {
        switch f.kind {
        case .response:
            counters.responses += 1
            if heartbeatsInFlight.removeValue(forKey: f.seq) != nil {
                if (try? Response(payload: f.payload))?.status != .ok { counters.heartbeatFailures += 1 }
                return
            }
            timeouts.removeValue(forKey: f.seq)?.cancel()
            guard let c = pending.removeValue(forKey: f.seq) else { counters.unmatchedResponses += 1; return }
            let op = pendingOpcode.removeValue(forKey: f.seq)
            do {
                let r = try Response(payload: f.payload)
                guard r.opcode == op?.rawValue else {
                    c.resume(throwing: DeviceError.badResponse(op ?? .getInfo, "response echoes opcode 0x\(String(r.opcode, radix: 16))"))
                    return
                }
                c.resume(returning: r)
            } catch {
                counters.unreadableFrames += 1
                c.resume(throwing: DeviceError.badResponse(op ?? .getInfo, error.description))
            }
        case .event:
            counters.events += 1
            if eventSeq.observe(f.seq) > 0 { counters.eventGaps += 1 }
            guard let e = try? Event(payload: f.payload) else { counters.unreadableFrames += 1; return }
            apply(e)
        case .data, .command:
            counters.unreadableFrames += 1
        }
    }

    private func apply(_ e: Event) {
        switch e {
        case let .stateChanged(_, new):
            state = new
        case let .interlocksChanged(i):
            interlocks = i
            feed(.interlocks(i))
        case let .scanStarted(id, t):
            if scanFeed?.id == id { feed(.started(deviceTimeUs: t)) }
        case let .scanComplete(id, lines, exp, dap):
            if scanFeed?.id == id { feed(.completed(lines: lines, exposureMs: exp, dapX1000: dap)) }
        case let .scanAborted(id, reason, sent):
            if scanFeed?.id == id { feed(.aborted(reason: reason, linesSent: sent)) }
        case let .fault(code, message):
            feed(.fault(code, message))
        case .watchdogExpired:
            feed(.watchdogExpired)
        case .motionDone, .faultCleared:
            break
        }
        broadcast(.event(e))
    }

    private func feed(_ item: ScanFeed) {
        guard let s = scanFeed else { return }
        if case .dropped = s.continuation.yield(item), case .lines(let f) = item {
            counters.linesDropped += f.lines.count
        }
    }

    private func handleDataFrame(_ f: Frame) {
        guard f.kind == .data else { counters.unreadableFrames += 1; return }
        counters.dataFrames += 1
        let missing = dataSeq.observe(f.seq)
        if missing > 0 {
            counters.dataGaps += 1
            counters.missingDataFrames += missing
            feed(.gap(missingFrames: missing))
            broadcast(.dataGap(missing: missing, atSeq: f.seq))
        }
        guard let d = try? DataFrame(payload: f.payload) else { counters.unreadableFrames += 1; return }
        counters.linesReceived += d.lines.count
        if scanFeed?.id == d.scanID { feed(.lines(d)) }
    }
}

extension DeviceSession {
    /// Returns as soon as the actor runs it: a liveness probe for the service watchdog.
    public func liveness() {}

    /// Test hook: blocks this actor's executor for `seconds` so that tests can prove a wedged
    /// session stops the systemd watchdog pings. Reachable only through the daemon's
    /// `DEXAD_TEST_WEDGE_SESSION_AFTER_MS` environment variable.
    public func wedgeForTesting(seconds: Double) {
        Thread.sleep(forTimeInterval: seconds)
    }
}

/// Gaps between the frames the host wrote, measured where they leave for the transport
/// (the writer task), on the session's clock. Shared by the writer task and the actor.
final class SendGapMeter: Sendable {
    private struct State {
        var last: Duration?
        var longestEver: Duration = .zero
        var windowLongest: Duration = .zero
        var windowOpen = false
    }
    private let stopwatch: Stopwatch
    private let state = Mutex(State())

    init(stopwatch: Stopwatch) { self.stopwatch = stopwatch }

    func written() {
        let now = stopwatch.elapsed
        state.withLock { s in
            if let last = s.last {
                s.longestEver = max(s.longestEver, now - last)
                if s.windowOpen { s.windowLongest = max(s.windowLongest, now - last) }
            }
            s.last = now
        }
    }

    func beginWindow() {
        state.withLock { s in
            s.windowOpen = true
            s.windowLongest = .zero
        }
    }

    /// The window's longest gap so far, counting the time since the last frame.
    var window: Duration {
        let now = stopwatch.elapsed
        return state.withLock { s in max(s.windowLongest, s.last.map { now - $0 } ?? .zero) }
    }

    var longestEver: Duration { state.withLock { $0.longestEver } }
}

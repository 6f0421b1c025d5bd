import DXAcquisition
import DXControl
import DXDecomposition
import DXProtocol
import DXSpawn
import DequeModule
import Foundation
import Logging
import Synchronization

/// The daemon's recent log lines, kept in memory for service reports (the journal keeps the
/// full log on a console; a report must not need root to read it). Bounded by lines and by
/// bytes; a line over 8 kB (a runaway message) is cut at a character boundary and marked.
/// A cache that fills during the first hours and then holds its size: `service.metrics`
/// reports what it holds of the heap (`log_ring_bytes`), and the most it can hold.
public final class LogRing: Sendable {
    public static let shared = LogRing(capacity: 5000, maxBytes: 1 << 20)
    /// The longest line kept whole.
    public static let maxLineBytes = 8 << 10
    private struct Lines {
        var lines: Deque<String>
        var bytes = 0
        var heapBytes = 0
    }
    private let state: Mutex<Lines>
    private let capacity: Int
    public let maxBytes: Int

    public init(capacity: Int, maxBytes: Int) {
        self.capacity = max(1, capacity)
        self.maxBytes = max(1, maxBytes)
        // The slots are allocated once, at the start: the ring's storage does not step up
        // (doubling) half-way through a day.
        state = Mutex(Lines(lines: Deque(minimumCapacity: self.capacity + 1)))
    }

    public func append(_ line: String) {
        let line = Self.cut(line, to: min(maxBytes, Self.maxLineBytes))
        state.withLock { s in
            s.lines.append(line)
            s.bytes += line.utf8.count
            s.heapBytes += Self.heapBytes(line)
            while s.lines.count > capacity || s.bytes > maxBytes, let first = s.lines.popFirst() {
                s.bytes -= first.utf8.count
                s.heapBytes -= Self.heapBytes(first)
            }
        }
    }

    /// The line, or its first bytes up to a character boundary and "…" within `limit` bytes.
    static func cut(_ line: String, to limit: Int) -> String {
        let utf8 = line.utf8
        guard utf8.count > limit else { return line }
        let mark = "…"
        var end = utf8.index(utf8.startIndex, offsetBy: max(0, limit - mark.utf8.count))
        // Back to the first byte of a character: a continuation byte is 0b10xxxxxx.
        while end > utf8.startIndex, utf8[end] & 0xC0 == 0x80 { end = utf8.index(before: end) }
        return String(line[..<end]) + mark
    }

    /// What a line of text costs the heap (an estimate of Swift's and glibc's layout): a
    /// string of 15 bytes or fewer lives in its slot; a longer one is an object of a 32-byte
    /// header and its bytes with a terminator, in a malloc chunk of 8 more, rounded up to 16.
    static func heapBytes(_ line: String) -> Int {
        let n = line.utf8.count
        guard n > 15 else { return 0 }
        return max(32, (32 + n + 1 + 8 + 15) & ~15)
    }

    public var text: String { state.withLock { $0.lines.joined(separator: "\n") + "\n" } }

    /// The UTF-8 bytes of the lines it holds (at most `maxBytes`).
    public var bytes: Int { state.withLock { $0.bytes } }
    public var count: Int { state.withLock { $0.lines.count } }
    /// What it holds of the heap: its slots and its lines' objects (estimated, `heapBytes(_:)`).
    public var heapBytes: Int { slotBytes + state.withLock { $0.heapBytes } }
    /// The most it can hold of the heap: every slot full, every line at least 16 bytes (the
    /// byte limit spread over as many lines as the slots allow).
    public var maxHeapBytes: Int { slotBytes + capacity * (32 + 1 + 8 + 15) + maxBytes }
    /// The slots reserved at the start (one more than the lines: a line goes in before the
    /// oldest comes out).
    private var slotBytes: Int { (capacity + 1) * MemoryLayout<String>.stride }

    /// A swift-log handler that writes into this ring.
    public func handler(label: String, level: Logger.Level) -> some LogHandler { RingLogHandler(ring: self, label: label, logLevel: level) }
}

struct RingLogHandler: LogHandler {
    let ring: LogRing
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let meta = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        ring.append("\(Date().formatted(.iso8601)) \(event.level) \(label):\(meta) \(event.message)")
    }
}

/// `service.report`: one tarball for a service ticket — versions, configuration, the
/// daemon's and the firmware's logs, sensor history, a self-test, the calibration in use,
/// metrics and the last N captures. Built in a temporary folder with `tar`, returned
/// base64-encoded so that the engineer's `dexa` (which cannot read the daemon's state
/// directory) can write it out.
struct ServiceReport {
    let device: DeviceService
    let configuration: DaemonConfiguration
    let deviceName: String
    /// The DICOM queue as the store has it (nil: unreadable): what waits for the PACS and RIS.
    var dicomQueue: DicomQueueStatus? = nil

    static let version = "0.1.0"

    /// The calibration in use, as the next scan would load it: when, from what, for which unit,
    /// its fit against the acceptance rule; or why there is none a patient may be measured with.
    var calibrationText: String {
        let store = CalibrationStore(stateDirectory: configuration.stateDirectory)
        switch store.load() {
        case .success(let c):
            return """
                calibration \(store.path)
                created \(c.created) from \(c.source)
                unit \(c.unit?.description ?? "not recorded")
                residuals: hydroxyapatite \(c.residualHydroxyapatite) g/cm², soft tissue \(c.residualSoftTissue) g/cm², fat fraction \(c.residualFatFraction)
                acceptance: \(c.verdict)
                points: \(c.points.count)

                """
        case .failure(let problem):
            return "no calibration a patient may be measured with: \(problem)\n"
        }
    }

    func build(captures: Int) async throws -> ServiceReportResult {
        let fm = FileManager.default
        let stamp = Date().formatted(.iso8601).replacingOccurrences(of: ":", with: "")
        let serial = await device.session.info?.serial ?? "no-device"
        let name = "dexa-report-\(serial)-\(stamp)"
        let work = fm.temporaryDirectory.appendingPathComponent("dexa-report-\(UUID().uuidString)")
        let dir = work.appendingPathComponent(name)
        try fm.createDirectory(at: dir.appendingPathComponent("captures"), withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: work) }
        func write(_ file: String, _ text: String) throws {
            try Data(text.utf8).write(to: dir.appendingPathComponent(file))
        }
        var contents: [String] = []

        let info = await device.session.info
        try write("versions.txt", """
            dexad \(Self.version)
            device link \(deviceName)
            model \(info?.model ?? "-") serial \(info?.serial ?? "-") firmware \(info?.firmware ?? "-")
            report created \(Date().formatted(.iso8601))

            """)
        contents.append("versions.txt")
        try write("config.txt", configurationText)
        contents.append("config.txt")
        try write("daemon.log", LogRing.shared.text)
        contents.append("daemon.log")
        try write("firmware.log", await firmwareLog())
        contents.append("firmware.log")
        try write("sensors.csv", sensorCSV)
        contents.append("sensors.csv")
        try write("selftest.txt", await selfTest())
        contents.append("selftest.txt")
        try write("calibration.txt", calibrationText)
        contents.append("calibration.txt")
        device.recordDicomQueue(dicomQueue.map(DicomQueueMetrics.init))
        try write("metrics.prom", await device.prometheusText())
        contents.append("metrics.prom")
        if let dicomQueue {
            try write("dicom-queue.json", (try? JSONValue(encoding: dicomQueue).description) ?? "{}")
            contents.append("dicom-queue.json")
        }
        if let status = try? await device.session.refreshStatus() {
            try write("status.json", (try? JSONValue(encoding: DeviceStatusResult(status, link: await device.session.counters)).description) ?? "{}")
            contents.append("status.json")
        }
        // Copying the captures (megabytes each), tar and reading the tarball block: on a
        // thread of their own, never on the cooperative pool that runs the device session.
        let (copied, data) = try await onThreadOfItsOwn { () throws -> ([String], Data) in
            var copied: [String] = []
            for c in latestCaptures(captures) {
                let target = dir.appendingPathComponent("captures").appendingPathComponent(c.lastPathComponent)
                guard (try? FileManager.default.copyItem(at: c, to: target)) != nil else { continue }
                copied.append("captures/" + c.lastPathComponent)
            }
            let tarball = work.appendingPathComponent(name + ".tar.gz")
            let status = try Spawn.run("/bin/tar", ["-czf", tarball.path, "-C", work.path, name])
            guard status == 0 else {
                throw RPCError(code: RPCError.internalErrorCode, message: "tar failed with status \(status) writing the service report; its message is in the daemon's journal")
            }
            return (copied, try Data(contentsOf: tarball))
        }
        contents += copied
        return ServiceReportResult(name: name + ".tar.gz", sizeBytes: data.count, contents: contents.map { name + "/" + $0 },
                                   tarGzBase64: data.base64EncodedString())
    }

    private var configurationText: String {
        let c = configuration
        return """
            socket = \(c.socketPath)
            device = \(c.device)
            state_directory = \(c.stateDirectory)
            record_captures = \(c.recordCaptures)
            time_scale = \(c.timeScale)
            command_timeout_ms = \(c.commandTimeoutMs)
            log_level = \(c.logLevel)
            technologist_group = \(c.technologistGroup)
            service_group = \(c.serviceGroup)
            audit_log = \(c.auditLogPath)

            """
    }

    private func firmwareLog() async -> String {
        var text = "", offset: UInt32 = 0
        for _ in 0..<64 {
            guard let bytes = try? await device.session.execute(.getLog(offset: offset, maxBytes: 4096)),
                  let chunk = try? LogChunk(decoding: bytes) else { return text + "\n(firmware log unavailable)\n" }
            text += chunk.text
            if chunk.text.isEmpty || chunk.nextOffset == offset { break }
            offset = chunk.nextOffset
        }
        return text
    }

    private func selfTest() async -> String {
        do {
            let r = try SelfTestReport(decoding: await device.session.execute(.selfTest, timeout: .seconds(10)))
            return r.items.map { "\($0.component)\t\($0.result)\tvalue \($0.value)\tcode \($0.code)" }.joined(separator: "\n") + "\n"
        } catch {
            return "self-test not run: \(error)\n"
        }
    }

    private var sensorCSV: String {
        var out = "time,tube_temp_c,detector_temp_c,generator_temp_c,kv,tube_current_ua,supply_v,dark_mean,uptime_s,dropped_lines,usb_errors\n"
        for (t, r) in device.sensorSamples {
            out += "\(t.formatted(.iso8601)),\(Double(r.tubeTempX10) / 10),\(Double(r.detectorTempX10) / 10),\(Double(r.generatorTempX10) / 10),"
            out += "\(Double(r.kvX10) / 10),\(r.tubeCurrentUA),\(Double(r.supplyMv) / 1000),\(r.darkMean),\(r.uptimeS),\(r.droppedLines),\(r.usbErrors)\n"
        }
        return out
    }

    private func latestCaptures(_ n: Int) -> [URL] {
        guard n > 0 else { return [] }
        let dir = URL(fileURLWithPath: configuration.captureDirectory)
        let files = (try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: [.contentModificationDateKey])) ?? []
        let dated = files.filter { $0.pathExtension == "dxcap" }.map { url -> (URL, Date) in
            (url, (try? url.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate) ?? .distantPast)
        }
        return dated.sorted { $0.1 > $1.1 }.prefix(n).map(\.0)
    }
}

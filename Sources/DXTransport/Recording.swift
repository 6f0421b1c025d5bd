import DXProtocol
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Writes a `.dxcap` (ICD §7) as bytes arrive: the preamble at creation, then one record
/// per chunk with a plain `write(2)`, so a crash loses at most the record being written
/// (which readers ignore). `sync()` forces it to disk at the end of a scan.
///
/// A write that fails (a full disk, an I/O error) cuts the file back to the end of the last
/// whole record and ends the capture: nothing more is written, so the file never holds a
/// half record followed by whole ones, and `failure` says why and after how many records.
/// Whoever runs the scan must stop it (ScanRunner does): a capture is never silently cut.
public final class CaptureWriter: Sendable {
    public let path: String
    private let fd: Mutex<Int32>
    private let elapsed: @Sendable () -> Duration
    private let counts = Mutex<(records: Int, bytes: Int)>((0, 0))
    /// Bytes in the file that belong to whole records (the preamble included).
    private let good = Mutex<Int64>(0)
    private let failed = Mutex<String?>(nil)

    public init<C: Clock>(path: String, header: CaptureHeader, clock: C) throws where C.Duration == Duration {
        let start = clock.now
        elapsed = { start.duration(to: clock.now) }
        self.path = path
        // A new file where possible (then only what this writer made is removed on failure);
        // a path that exists (a benchmark's scratch file) is written over.
        var created = true
        var f = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        if f < 0 && errno == EEXIST {
            created = false
            f = Glibc.open(path, O_WRONLY | O_TRUNC | O_CLOEXEC, 0o640)
        }
        guard f >= 0 else { throw TransportError.io("cannot create capture \(path): \(errnoText())") }
        fd = Mutex(f)
        do {
            try write(CaptureFormat.preamble(header))
        } catch {
            // Not even the preamble fitted: no capture at all rather than an unreadable one.
            Glibc.close(f)
            if created { unlink(path) }
            throw error
        }
    }

    public func record(_ endpoint: Endpoint, _ bytes: [UInt8]) throws {
        let r = CaptureRecord(tUs: elapsed().microseconds, endpoint: endpoint, bytes: bytes)
        try write(r.encoded)
        counts.withLock { $0.records += 1; $0.bytes += bytes.count }
    }

    public var recorded: (records: Int, bytes: Int) { counts.withLock { $0 } }

    /// Why the capture ended early (the first failed write), nil while every record landed.
    public var failure: String? { failed.withLock { $0 } }

    private func write(_ bytes: [UInt8]) throws {
        try fd.withLock { f in
            guard f >= 0 else { throw TransportError.io("capture \(path) is closed") }
            if let why = failed.withLock({ $0 }) { throw TransportError.io(why) }
            var done = 0
            while done < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.write(f, $0.baseAddress! + done, $0.count - done) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    // n == 0 from a regular file is a full disk as well.
                    let cause = n == 0 ? "no space left on device" : errnoText()
                    let kept = good.withLock { $0 }
                    // A partial record would sit in front of whatever came next: cut back to the
                    // last whole one. The file then reads as the records before the failure.
                    _ = ftruncate(f, off_t(kept))
                    _ = lseek(f, off_t(kept), SEEK_SET)
                    let records = counts.withLock { $0.records }
                    let why = "writing capture \(path) failed after \(records) records: \(cause)"
                    failed.withLock { $0 = why }
                    throw TransportError.io(why)
                }
                done += n
            }
            good.withLock { $0 += Int64(bytes.count) }
        }
    }

    public func sync() { fd.withLock { f in if f >= 0 { _ = fsync(f) } } }

    public func close() {
        fd.withLock { f in
            if f >= 0 { _ = fsync(f); _ = Glibc.close(f) }
            f = -1
        }
    }

    deinit { close() }
}

/// The recording tee (STYLE.md, lesson 2): a `DeviceTransport` that passes everything
/// through and, while a capture is attached, writes every byte in both directions to it
/// as it passes. Recording failures never disturb the link; they are counted.
public final class RecordingTransport: DeviceTransport {
    public let base: any DeviceTransport
    public var name: String { base.name }
    private let writer = Mutex<CaptureWriter?>(nil)
    private let failures = Mutex(0)

    public init(_ base: any DeviceTransport) { self.base = base }

    public func attach(_ w: CaptureWriter?) { writer.withLock { $0 = w } }

    /// Detaches and returns the current capture.
    @discardableResult
    public func detach() -> CaptureWriter? {
        writer.withLock { w in
            defer { w = nil }
            return w
        }
    }

    public var recordingFailures: Int { failures.withLock { $0 } }

    private let failureHandler = Mutex<(@Sendable (String) -> Void)?>(nil)

    /// Told (once per capture, on the thread that wrote) when the attached capture stops
    /// taking records: the scan's owner stops the scan at once, not at its next line.
    public func onCaptureFailure(_ handler: (@Sendable (String) -> Void)?) { failureHandler.withLock { $0 = handler } }

    /// Why the attached capture stopped taking records (a full disk), nil while it takes them.
    public var captureFailure: String? { writer.withLock { $0 }?.failure }

    private func tee(_ endpoint: Endpoint, _ bytes: [UInt8]) {
        guard let w = writer.withLock({ $0 }) else { return }
        let firstFailure = w.failure == nil
        do { try w.record(endpoint, bytes) } catch {
            failures.withLock { $0 += 1 }
            if firstFailure, let why = w.failure, let handler = failureHandler.withLock({ $0 }) { handler(why) }
        }
    }

    public func open() async throws -> AsyncThrowingStream<TransportChunk, any Error> {
        let upstream = try await base.open()
        let (stream, cont) = AsyncThrowingStream<TransportChunk, any Error>.makeStream()
        let pump = Task { [self] in
            do {
                for try await chunk in upstream {
                    tee(chunk.endpoint, chunk.bytes)
                    cont.yield(chunk)
                }
                cont.finish()
            } catch {
                cont.finish(throwing: error)
            }
        }
        cont.onTermination = { _ in pump.cancel() }
        return stream
    }

    public func send(_ bytes: [UInt8]) async throws {
        tee(.commandOut, bytes)
        try await base.send(bytes)
    }

    public func close() async { await base.close() }
}

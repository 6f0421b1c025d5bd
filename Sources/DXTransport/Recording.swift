import DXProtocol
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Writes a `.dxcap` (ICD §7) as bytes arrive: the preamble at creation, then one record
/// per chunk with a plain `write(2)`, so a crash loses at most the record being written
/// (which readers ignore). `sync()` forces it to disk at the end of a scan.
public final class CaptureWriter: Sendable {
    public let path: String
    private let fd: Mutex<Int32>
    private let elapsed: @Sendable () -> Duration
    private let counts = Mutex<(records: Int, bytes: Int)>((0, 0))

    public init<C: Clock>(path: String, header: CaptureHeader, clock: C) throws where C.Duration == Duration {
        let start = clock.now
        elapsed = { start.duration(to: clock.now) }
        self.path = path
        let f = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard f >= 0 else { throw TransportError.io("cannot create capture \(path): \(errnoText())") }
        fd = Mutex(f)
        do {
            try write(CaptureFormat.preamble(header))
        } catch {
            Glibc.close(f)
            throw error
        }
    }

    public func record(_ endpoint: Endpoint, _ bytes: [UInt8]) throws {
        let r = CaptureRecord(tUs: elapsed().microseconds, endpoint: endpoint, bytes: bytes)
        try write(r.encoded)
        counts.withLock { $0.records += 1; $0.bytes += bytes.count }
    }

    public var recorded: (records: Int, bytes: Int) { counts.withLock { $0 } }

    private func write(_ bytes: [UInt8]) throws {
        try fd.withLock { f in
            guard f >= 0 else { throw TransportError.io("capture \(path) is closed") }
            var done = 0
            while done < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.write(f, $0.baseAddress! + done, $0.count - done) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw TransportError.io("writing capture \(path): \(errnoText())") }
                done += n
            }
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

    private func tee(_ endpoint: Endpoint, _ bytes: [UInt8]) {
        guard let w = writer.withLock({ $0 }) else { return }
        do { try w.record(endpoint, bytes) } catch { failures.withLock { $0 += 1 } }
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

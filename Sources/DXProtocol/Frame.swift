/// Kinds of frame, ICD §2.
public enum FrameKind: UInt8, Sendable, CaseIterable {
    case command = 1
    case response = 2
    case event = 3
    case data = 4
}

/// One ICD §2 frame: header, payload and (on the wire) its CRC.
public struct Frame: Sendable, Equatable {
    public static let magic: (UInt8, UInt8) = (0x44, 0x58)
    public static let version: UInt8 = 1
    public static let headerSize = 12
    public static let trailerSize = 4
    public static let maxPayload = 262_144

    public var kind: FrameKind
    public var seq: UInt32
    public var payload: [UInt8]

    public init(kind: FrameKind, seq: UInt32, payload: [UInt8]) {
        self.kind = kind
        self.seq = seq
        self.payload = payload
    }

    /// The frame as it crosses the bus. Payloads longer than the ICD's limit are a
    /// programming error of the sender, so they are refused rather than sent.
    public func encoded() throws(FrameError) -> [UInt8] {
        guard payload.count <= Frame.maxPayload else { throw .payloadTooLarge(payload.count) }
        var w = WireWriter(capacity: Frame.headerSize + payload.count + Frame.trailerSize)
        w.u8(Frame.magic.0)
        w.u8(Frame.magic.1)
        w.u8(Frame.version)
        w.u8(kind.rawValue)
        w.u32(seq)
        w.u32(UInt32(payload.count))
        w.raw(payload)
        let crc = CRC32.checksum(w.bytes)
        w.u32(crc)
        return w.bytes
    }
}

public enum FrameError: Error, Equatable, Sendable {
    case payloadTooLarge(Int)
}

/// Counters a receiver keeps per stream (ICD §2: "counts the error").
public struct FrameErrorCounts: Sendable, Equatable, Codable {
    /// Times the decoder lost sync (bad magic, version, kind, length or CRC) and had to hunt.
    public var resyncs: Int = 0
    /// Frames whose header looked right but whose CRC did not match.
    public var crcErrors: Int = 0
    /// Bytes thrown away while hunting for the next frame.
    public var droppedBytes: Int = 0

    public init() {}

    public enum CodingKeys: String, CodingKey { case resyncs, crcErrors = "crc_errors", droppedBytes = "dropped_bytes" }
}

/// Reassembles frames from a byte stream and resynchronises after corruption, exactly as
/// ICD §2 says: a bad magic, version, kind, length or CRC drops one byte and hunts for the next `DX`
/// that starts a valid frame. A frame is only returned after its CRC checked.
///
/// One reading of the ICD beyond its letter (see docs/ICD-NOTES.md): a corrupted length can
/// make a header claim up to 256 KiB that never arrive, which would hold back every frame
/// behind it on a quiet endpoint. While waiting for such a frame, the decoder looks ahead;
/// if a complete frame with a good CRC starts inside the claimed span, the claim is treated
/// as corrupt (it cannot be: a good frame never contains a good frame at a `DX` boundary
/// except by a 2^-32 accident).
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    private var hunting = false
    /// Where the look-ahead for a frame hidden in a long claim has got to (absolute index).
    private var lookahead = 0
    public private(set) var errors = FrameErrorCounts()
    public private(set) var framesDecoded = 0
    public private(set) var bytesConsumed = 0

    public init() {}

    /// Bytes waiting for the rest of their frame.
    public var pendingBytes: Int { buffer.count - start }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    private mutating func compact() {
        if start > 0 && (start >= 65_536 || start * 2 >= buffer.count) {
            buffer.removeSubrange(0..<start)
            lookahead = max(0, lookahead - start)
            start = 0
        }
    }

    /// The next complete, CRC-checked frame, or nil when more bytes are needed.
    public mutating func next() -> Frame? {
        while true {
            switch examine(at: start) {
            case .needMore(let claimedEnd):
                if let claimedEnd, hiddenFrameInside(claimedEnd: claimedEnd) {
                    reject(crc: false)
                    continue
                }
                return nil
            case .bad(let crc):
                reject(crc: crc)
            case .good(let end):
                let frame = buffer.withUnsafeBufferPointer { b -> Frame? in
                    guard let kind = FrameKind(rawValue: b[start + 3]) else { return nil }
                    let seq = UInt32(b[start + 4]) | UInt32(b[start + 5]) << 8
                        | UInt32(b[start + 6]) << 16 | UInt32(b[start + 7]) << 24
                    let payload = Array(b[(start + Frame.headerSize)..<(end - Frame.trailerSize)])
                    return Frame(kind: kind, seq: seq, payload: payload)
                }
                guard let frame else { reject(crc: false); continue }
                bytesConsumed += end - start
                start = end
                lookahead = start
                hunting = false
                framesDecoded += 1
                return frame
            }
        }
    }

    private mutating func reject(crc: Bool) {
        if !hunting {
            errors.resyncs += 1
            if crc { errors.crcErrors += 1 }
            hunting = true
        }
        errors.droppedBytes += 1
        bytesConsumed += 1
        start += 1
        lookahead = max(lookahead, start)
    }

    private enum Verdict {
        case needMore(claimedEnd: Int?)
        case bad(crc: Bool)
        case good(end: Int)
    }

    private func examine(at i: Int) -> Verdict {
        buffer.withUnsafeBufferPointer { b in
            let available = b.count - i
            if available < 1 { return .needMore(claimedEnd: nil) }
            if b[i] != Frame.magic.0 { return .bad(crc: false) }
            if available < 2 { return .needMore(claimedEnd: nil) }
            if b[i + 1] != Frame.magic.1 { return .bad(crc: false) }
            if available < 3 { return .needMore(claimedEnd: nil) }
            if b[i + 2] != Frame.version { return .bad(crc: false) }
            if available < 4 { return .needMore(claimedEnd: nil) }
            if FrameKind(rawValue: b[i + 3]) == nil { return .bad(crc: false) }
            if available < Frame.headerSize { return .needMore(claimedEnd: nil) }
            let n = Int(b[i + 8]) | Int(b[i + 9]) << 8 | Int(b[i + 10]) << 16 | Int(b[i + 11]) << 24
            if n > Frame.maxPayload { return .bad(crc: false) }
            let end = i + Frame.headerSize + n + Frame.trailerSize
            if end > b.count { return .needMore(claimedEnd: end) }
            let body = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(b)[i..<(end - 4)])
            let crc = CRC32.checksum(body)
            let stored = UInt32(b[end - 4]) | UInt32(b[end - 3]) << 8 | UInt32(b[end - 2]) << 16 | UInt32(b[end - 1]) << 24
            return crc == stored ? .good(end: end) : .bad(crc: true)
        }
    }

    /// True when a complete frame with a good CRC starts after `start` and before the
    /// incomplete frame's claimed end. Each byte is scanned once per claim.
    private mutating func hiddenFrameInside(claimedEnd: Int) -> Bool {
        var j = max(lookahead, start + 1)
        let limit = min(claimedEnd, buffer.count - 1)
        // A candidate that itself waits for more bytes must not stop the search (it may be
        // random payload bytes that look like a header); the scan resumes from the first
        // such candidate next time, since it may complete then.
        var firstUndecided: Int?
        while j < limit {
            if buffer[j] == Frame.magic.0 && buffer[j + 1] == Frame.magic.1 {
                switch examine(at: j) {
                case .good:
                    lookahead = j
                    return true
                case .needMore:
                    if firstUndecided == nil { firstUndecided = j }
                case .bad:
                    break
                }
            }
            j += 1
        }
        lookahead = firstUndecided ?? max(j, start + 1)
        return false
    }
}

/// Counts gaps in a device-numbered stream (events or data), ICD §2: numbered from 1
/// after each boot, one by one, so a jump forward means lost frames. A return to 1 is a
/// reboot, not a gap.
public struct SequenceTracker: Sendable, Equatable {
    public private(set) var last: UInt32?
    /// Gaps seen (each jump forward counts once).
    public private(set) var gaps = 0
    /// Frames the gaps account for.
    public private(set) var missing: UInt64 = 0
    /// Frames whose seq went backwards or repeated without a restart at 1.
    public private(set) var outOfOrder = 0
    public private(set) var restarts = 0

    public init() {}

    /// Records `seq`; returns how many frames were missed just before it (0 when none).
    @discardableResult
    public mutating func observe(_ seq: UInt32) -> UInt64 {
        defer { last = seq }
        guard let last else { return 0 }
        if seq == 1 && last != 0 {
            restarts += 1
            return 0
        }
        if seq == last &+ 1 { return 0 }
        if seq > last {
            let lost = UInt64(seq - last - 1)
            gaps += 1
            missing += lost
            return lost
        }
        outOfOrder += 1
        return 0
    }

    public mutating func reset() { self = SequenceTracker() }
}

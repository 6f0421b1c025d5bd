/// One scan line, ICD §6: where and when it was taken, and a (low, high) sample pair per channel.
public struct ScanLine: Sendable, Equatable {
    public var index: UInt32
    public var yUm: Int32
    public var xUm: Int32
    public var tUs: UInt64
    public var flags: LineFlags
    /// Samples interleaved as on the wire: low₀, high₀, low₁, high₁, …
    public var samples: [UInt16]

    public init(index: UInt32, yUm: Int32, xUm: Int32, tUs: UInt64, flags: LineFlags, samples: [UInt16]) {
        self.index = index; self.yUm = yUm; self.xUm = xUm; self.tUs = tUs; self.flags = flags; self.samples = samples
    }

    public var channels: Int { samples.count / 2 }
    public func low(_ c: Int) -> UInt16 { samples[2 * c] }
    public func high(_ c: Int) -> UInt16 { samples[2 * c + 1] }

    public static let headerSize = 20
    public static func size(channels: Int) -> Int { headerSize + 4 * channels }
}

/// A data frame's payload, ICD §6.
public struct DataFrame: Sendable, Equatable {
    public var scanID: UInt32
    public var firstLine: UInt32
    public var channels: UInt16
    public var lines: [ScanLine]

    public init(scanID: UInt32, firstLine: UInt32, channels: UInt16, lines: [ScanLine]) {
        self.scanID = scanID; self.firstLine = firstLine; self.channels = channels; self.lines = lines
    }

    public static let headerSize = 12

    public var payload: [UInt8] {
        var w = WireWriter(capacity: DataFrame.headerSize + lines.count * ScanLine.size(channels: Int(channels)))
        w.u32(scanID); w.u32(firstLine); w.u16(UInt16(clamping: lines.count)); w.u16(channels)
        for l in lines {
            w.i32(l.yUm); w.i32(l.xUm); w.u64(l.tUs); w.u16(l.flags.rawValue); w.u16(0)
            for s in l.samples { w.u16(s) }
        }
        return w.bytes
    }

    /// Reads a data payload. The sizes must agree exactly with line_count and channels.
    public init(payload: [UInt8]) throws(WireError) {
        guard payload.count >= DataFrame.headerSize else { throw .truncated(field: "data header") }
        let (scanID, first, count, channels): (UInt32, UInt32, Int, Int) = payload.withUnsafeBytes { b in
            (b.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian,
             b.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian,
             Int(b.loadUnaligned(fromByteOffset: 8, as: UInt16.self).littleEndian),
             Int(b.loadUnaligned(fromByteOffset: 10, as: UInt16.self).littleEndian))
        }
        let lineSize = ScanLine.size(channels: channels)
        let expected = DataFrame.headerSize + count * lineSize
        if payload.count < expected { throw .truncated(field: "line \(min(count - 1, (payload.count - DataFrame.headerSize) / lineSize))") }
        if payload.count > expected { throw .trailingBytes(payload.count - expected) }
        self.scanID = scanID
        self.firstLine = first
        self.channels = UInt16(channels)
        var lines: [ScanLine] = []
        lines.reserveCapacity(count)
        payload.withUnsafeBytes { b in
            for i in 0..<count {
                let o = DataFrame.headerSize + i * lineSize
                let samples = [UInt16](unsafeUninitializedCapacity: 2 * channels) { buf, n in
                    let src = UnsafeRawBufferPointer(rebasing: b[(o + ScanLine.headerSize)..<(o + lineSize)])
                    UnsafeMutableRawBufferPointer(buf).copyMemory(from: src)
                    #if _endian(big)
                    for k in 0..<(2 * channels) { buf[k] = UInt16(littleEndian: buf[k]) }
                    #endif
                    n = 2 * channels
                }
                lines.append(ScanLine(
                    index: first &+ UInt32(i),
                    yUm: b.loadUnaligned(fromByteOffset: o, as: Int32.self).littleEndian,
                    xUm: b.loadUnaligned(fromByteOffset: o + 4, as: Int32.self).littleEndian,
                    tUs: b.loadUnaligned(fromByteOffset: o + 8, as: UInt64.self).littleEndian,
                    flags: LineFlags(rawValue: b.loadUnaligned(fromByteOffset: o + 16, as: UInt16.self).littleEndian),
                    samples: samples))
            }
        }
        self.lines = lines
    }
}

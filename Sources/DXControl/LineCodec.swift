import NIOCore

/// Splits the byte stream into lines at `\n`, refusing a line longer than `maxLength`
/// before it is buffered whole (a 10 MB line costs the daemon at most `maxLength`).
public struct LineDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer
    public let maxLength: Int
    private var scanned = 0

    public init(maxLength: Int) { self.maxLength = maxLength }

    public struct LineTooLong: Error {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        let from = view.index(view.startIndex, offsetBy: min(scanned, view.count))
        if let nl = view[from...].firstIndex(of: 0x0A) {
            let length = view.distance(from: view.startIndex, to: nl)
            guard length <= maxLength, let line = buffer.readSlice(length: length) else { throw LineTooLong() }
            buffer.moveReaderIndex(forwardBy: 1)
            scanned = 0
            context.fireChannelRead(wrapInboundOut(line))
            return .continue
        }
        scanned = view.count
        if view.count > maxLength { throw LineTooLong() }
        return .needMoreData
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A last line without its newline still counts.
        if buffer.readableBytes > 0, let rest = buffer.readSlice(length: buffer.readableBytes) {
            scanned = 0
            context.fireChannelRead(wrapInboundOut(rest))
        }
        return .needMoreData
    }
}

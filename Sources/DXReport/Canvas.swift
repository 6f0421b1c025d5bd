import CCairo
import Foundation

/// A cairo context with the few operations the report draws with, in points (1/72 inch) from
/// the page's top left. Owns nothing: the surface's owner (`ReportWriter`) creates and finishes
/// it. Used from one function at a time (cairo contexts are not thread-safe), so not Sendable.
struct Canvas {
    let cr: OpaquePointer

    struct Colour {
        var r: Double, g: Double, b: Double
        static let black = Colour(r: 0, g: 0, b: 0)
        static let grey = Colour(r: 0.45, g: 0.45, b: 0.45)
        static let light = Colour(r: 0.9, g: 0.9, b: 0.9)
        static let yellow = Colour(r: 0.95, g: 0.75, b: 0.0)
        static let cyan = Colour(r: 0.0, g: 0.65, b: 0.85)
        static let magenta = Colour(r: 0.85, g: 0.1, b: 0.75)
        static let red = Colour(r: 0.8, g: 0.1, b: 0.1)
        static let green = Colour(r: 0.55, g: 0.8, b: 0.55)
        static let amber = Colour(r: 0.98, g: 0.85, b: 0.55)
        static let rose = Colour(r: 0.96, g: 0.7, b: 0.7)
        static let blue = Colour(r: 0.1, g: 0.3, b: 0.7)
    }

    func colour(_ c: Colour) { cairo_set_source_rgb(cr, c.r, c.g, c.b) }

    func font(_ size: Double, bold: Bool = false) {
        cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
        cairo_set_font_size(cr, size)
    }

    enum Align { case left, right, centre }

    /// Text with its baseline at y.
    func text(_ s: String, x: Double, y: Double, align: Align = .left) {
        var extents = cairo_text_extents_t()
        cairo_text_extents(cr, s, &extents)
        let dx: Double
        switch align {
        case .left: dx = 0
        case .right: dx = -extents.x_advance
        case .centre: dx = -extents.x_advance / 2
        }
        cairo_move_to(cr, x + dx, y)
        cairo_show_text(cr, s)
    }

    func width(_ s: String) -> Double {
        var extents = cairo_text_extents_t()
        cairo_text_extents(cr, s, &extents)
        return extents.x_advance
    }

    /// Text wrapped to `width`, lines `leading` apart; returns the y below the last line.
    @discardableResult
    func paragraph(_ s: String, x: Double, y: Double, width: Double, leading: Double) -> Double {
        var yy = y
        for line in wrapped(s, width: width) {
            text(line, x: x, y: yy)
            yy += leading
        }
        return yy
    }

    /// The height `paragraph` would take in the current font, without drawing.
    func measureParagraph(_ s: String, width: Double, leading: Double) -> Double {
        Double(wrapped(s, width: width).count) * leading
    }

    /// `s` broken into lines no wider than `width` in the current font (a word wider than
    /// that has a line of its own).
    func wrapped(_ s: String, width: Double) -> [String] {
        var lines: [String] = [], line = ""
        for word in s.split(separator: " ") {
            let candidate = line.isEmpty ? String(word) : line + " " + word
            if self.width(candidate) > width && !line.isEmpty {
                lines.append(line)
                line = String(word)
            } else {
                line = candidate
            }
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }

    func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, width: Double = 0.8, dashed: Bool = false) {
        cairo_set_line_width(cr, width)
        if dashed {
            let dashes: [Double] = [3, 2]
            cairo_set_dash(cr, dashes, 2, 0)
        }
        cairo_move_to(cr, x0, y0)
        cairo_line_to(cr, x1, y1)
        cairo_stroke(cr)
        if dashed { cairo_set_dash(cr, nil, 0, 0) }
    }

    func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: Bool, width: Double = 0.8) {
        cairo_rectangle(cr, x, y, w, h)
        if fill { cairo_fill(cr) } else { cairo_set_line_width(cr, width); cairo_stroke(cr) }
    }

    func circle(_ x: Double, _ y: Double, _ r: Double) {
        cairo_new_sub_path(cr)
        cairo_arc(cr, x, y, r, 0, 2 * .pi)
        cairo_fill(cr)
    }

    /// An RGB raster (row-major, 3 bytes a pixel) drawn into the box (x, y, w, h), pixels
    /// kept sharp (nearest neighbour).
    func image(rgb: [UInt8], columns: Int, rows: Int, x: Double, y: Double, w: Double, h: Double) {
        guard columns > 0, rows > 0, rgb.count == columns * rows * 3,
              let surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, Int32(columns), Int32(rows)) else { return }
        defer { cairo_surface_destroy(surface) }
        cairo_surface_flush(surface)
        let stride = Int(cairo_image_surface_get_stride(surface))
        guard let data = cairo_image_surface_get_data(surface) else { return }
        for r in 0..<rows {
            for c in 0..<columns {
                let i = (r * columns + c) * 3
                // RGB24: a native-endian 32-bit word 0x00RRGGBB.
                let word = UInt32(rgb[i]) << 16 | UInt32(rgb[i + 1]) << 8 | UInt32(rgb[i + 2])
                (data + r * stride + c * 4).withMemoryRebound(to: UInt32.self, capacity: 1) { $0.pointee = word }
            }
        }
        cairo_surface_mark_dirty(surface)
        cairo_save(cr)
        cairo_translate(cr, x, y)
        cairo_scale(cr, w / Double(columns), h / Double(rows))
        cairo_set_source_surface(cr, surface, 0, 0)
        cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST)
        cairo_rectangle(cr, 0, 0, Double(columns), Double(rows))
        cairo_fill(cr)
        cairo_restore(cr)
    }
}

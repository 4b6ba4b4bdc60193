package com.tinybeauty.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Matrix
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import kotlin.math.max

/** One processed frame: the upright camera frame ([before]) and the same frame with the look ([after]). */
class FrameBuffers(val width: Int, val height: Int) {
    val before: Bitmap = Bitmap.createBitmap(width, height, Bitmap.Config.ARGB_8888)
    val after: Bitmap = Bitmap.createBitmap(width, height, Bitmap.Config.ARGB_8888)
    val beforeCanvas = Canvas(before)
}

/**
 * Shows the latest [FrameBuffers] centre-cropped to fill the view (like PreviewView's FILL_CENTER),
 * mirrored for the front camera so it behaves like a mirror; in split mode the left half shows the
 * frame before the model and the right half after.
 *
 * Buffers are recycled without copies, and never written while they may still be read: the analysis
 * thread [obtain]s a free buffer, fills it and [publish]es it; [onDraw] makes the newest published frame
 * the shown one. With hardware acceleration the RenderThread can still be drawing the previous display
 * list while the UI thread records the next, so a buffer that stops being shown is "retired" for one more
 * frame before it becomes free again (at most four buffers exist: filling, pending, shown, retired).
 */
class FrameView @JvmOverloads constructor(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {

    @Volatile var mirror = true
    @Volatile var split = false
        set(value) {
            field = value
            postInvalidate()
        }

    private val lock = Any()
    private var pending: FrameBuffers? = null   // published, not drawn yet: in no display list
    private var front: FrameBuffers? = null     // in the display list being recorded/shown
    private var retired: FrameBuffers? = null   // in the previous display list
    private val free = ArrayDeque<FrameBuffers>(4)
    private val drawMatrix = Matrix()
    private val bitmapPaint = Paint(Paint.FILTER_BITMAP_FLAG)
    private val density = resources.displayMetrics.density
    private val dividerPaint = Paint().apply {
        color = Color.WHITE
        strokeWidth = 2f * density
    }
    private val labelPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = Color.WHITE
        textSize = 16f * density
        setShadowLayer(3f * density, 0f, 0f, Color.BLACK)
    }

    /** A free [width] x [height] buffer to fill (allocated only while the pool warms up or on a resize). */
    fun obtain(width: Int, height: Int): FrameBuffers {
        synchronized(lock) {
            while (free.isNotEmpty()) {
                val f = free.removeFirst()
                if (f.width == width && f.height == height) return f
            }
        }
        return FrameBuffers(width, height)
    }

    /** Show [frame] at the next draw; a published frame that was never drawn goes straight back to the pool. */
    fun publish(frame: FrameBuffers) {
        synchronized(lock) {
            pending?.let { free.addLast(it) }
            pending = frame
        }
        postInvalidateOnAnimation()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        synchronized(lock) {
            val next = pending
            if (next != null) {
                retired?.let { free.addLast(it) }
                retired = front
                front = next
                pending = null
            }
            val frame = front ?: return
            val w = width.toFloat()
            val h = height.toFloat()
            val scale = max(w / frame.width, h / frame.height)
            drawMatrix.reset()
            drawMatrix.postTranslate(-frame.width / 2f, -frame.height / 2f)
            drawMatrix.postScale(if (mirror) -scale else scale, scale)
            drawMatrix.postTranslate(w / 2f, h / 2f)
            canvas.drawBitmap(frame.after, drawMatrix, bitmapPaint)
            if (split) {
                canvas.save()
                canvas.clipRect(0f, 0f, w / 2f, h)
                canvas.drawBitmap(frame.before, drawMatrix, bitmapPaint)
                canvas.restore()
                canvas.drawLine(w / 2f, 0f, w / 2f, h, dividerPaint)
                val y = 96f * density
                canvas.drawText(BEFORE, w / 4f - labelPaint.measureText(BEFORE) / 2f, y, labelPaint)
                canvas.drawText(AFTER, 3f * w / 4f - labelPaint.measureText(AFTER) / 2f, y, labelPaint)
            }
        }
    }

    private companion object {
        const val BEFORE = "before"
        const val AFTER = "after"
    }
}
